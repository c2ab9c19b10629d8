package e2e

import (
	"bytes"
	bin "encoding/binary"
	"fmt"
	"hash/crc32"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"golang.org/x/image/webp"
)

// webpImage is a 400×300 lossless WebP (left half red, right half blue).
const webpImage = "\x52\x49\x46\x46\x32\x00\x00\x00\x57\x45\x42\x50\x56\x50\x38\x4c\x26\x00\x00\x00\x2f\x8f\xc1\x4a\x00\x0f\x30\x1e\xf7\x50\xbd\x15\xf2\xfc\x47\x0b\xc8\xa4\x6d\xea\xdf\xf4\xde\x2a\x58\x23\xfa\x3f\x01\xf3\xf1\xf3\x5f\xfe\xcb\x7f\x47\x13"

// animatedWebPImage is a 400×300 animated WebP of two frames, red then blue.
const animatedWebPImage = "\x52\x49\x46\x46\x98\x00\x00\x00\x57\x45\x42\x50\x56\x50\x38\x58\x0a\x00\x00\x00\x02\x00\x00\x00\x8f\x01\x00\x2b\x01\x00\x41\x4e\x49\x4d\x06\x00\x00\x00\xff\xff\xff\xff\x00\x00\x41\x4e\x4d\x46\x32\x00\x00\x00\x00\x00\x00\x00\x00\x00\x8f\x01\x00\x2b\x01\x00\x64\x00\x00\x02\x56\x50\x38\x4c\x1a\x00\x00\x00\x2f\x8f\xc1\x4a\x00\x07\x10\xfd\x8f\xfe\x07\x04\x24\x49\xff\xff\x93\x11\xfd\xcf\xf8\xcf\x7f\xfe\x9f\x29\x41\x4e\x4d\x46\x32\x00\x00\x00\x00\x00\x00\x00\x00\x00\x8f\x01\x00\x2b\x01\x00\x64\x00\x00\x00\x56\x50\x38\x4c\x1a\x00\x00\x00\x2f\x8f\xc1\x4a\x00\x07\x10\xd1\xff\xfe\x07\x04\x24\x49\xff\xff\x93\x11\xfd\xcf\xf8\xcf\x7f\xfe\x9f\x29"

func gradient(w, h int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.RGBA{uint8(x), uint8(y), uint8(x + y), 255})
		}
	}
	return img
}

func testPNG(t *testing.T, w, h int) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, gradient(w, h)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func testJPEG(t *testing.T, w, h int) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, gradient(w, h), nil); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func testGIF(t *testing.T, w, h, frames int) []byte {
	t.Helper()
	var buf bytes.Buffer
	g := &gif.GIF{}
	for i := range frames {
		p := image.NewPaletted(image.Rect(0, 0, w, h), color.Palette{color.Black, color.White, color.RGBA{255, 0, 0, 255}})
		for j := range p.Pix {
			p.Pix[j] = uint8((j + i) % 3)
		}
		g.Image, g.Delay = append(g.Image, p), append(g.Delay, 10)
	}
	if err := gif.EncodeAll(&buf, g); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// pngBomb is a PNG whose header claims w×h pixels, with no image data after it.
func pngBomb(w, h uint32) []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	chunk := make([]byte, 4+13)
	copy(chunk, "IHDR")
	bin.BigEndian.PutUint32(chunk[4:], w)
	bin.BigEndian.PutUint32(chunk[8:], h)
	chunk[12], chunk[13] = 8, 6
	bin.Write(&b, bin.BigEndian, uint32(13))
	b.Write(chunk)
	bin.Write(&b, bin.BigEndian, crc32.ChecksumIEEE(chunk))
	return b.Bytes()
}

// decodeAny decodes a thumbnail of any of the served formats and reports its format.
func decodeAny(t *testing.T, data []byte) (image.Image, string) {
	t.Helper()
	if bytes.HasPrefix(data, []byte("RIFF")) {
		img, err := webp.Decode(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("decode WebP thumbnail: %v", err)
		}
		return img, "webp"
	}
	img, format, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("decode thumbnail: %v", err)
	}
	return img, format
}

// TestMediaThumbnails thumbnails a JPEG, a PNG, a GIF and a WebP with both methods and checks
// the size and type of each answer, on both API generations.
func TestMediaThumbnails(t *testing.T) {
	s := Start(t)
	alice := s.NewUser(t, "alice")
	type want struct {
		method        string
		width, height int    // requested
		w, h          int    // answered
		format, ctype string // answered
	}
	for _, tc := range []struct {
		name, ctype string
		data        []byte
		wants       []want
	}{
		{"jpeg", "image/jpeg", testJPEG(t, 1000, 500), []want{
			{"crop", 32, 32, 32, 32, "jpeg", "image/jpeg"},
			{"crop", 50, 40, 96, 96, "jpeg", "image/jpeg"},
			{"scale", 100, 100, 320, 160, "jpeg", "image/jpeg"},
			{"scale", 500, 400, 640, 320, "jpeg", "image/jpeg"},
			{"scale", 800, 600, 800, 400, "jpeg", "image/jpeg"},
			{"scale", 2000, 2000, 1000, 500, "jpeg", "image/jpeg"}, // larger than any size: the original
		}},
		{"png", "image/png", testPNG(t, 1000, 500), []want{
			{"crop", 32, 32, 32, 32, "png", "image/png"},
			{"crop", 96, 96, 96, 96, "png", "image/png"},
			{"scale", 320, 240, 320, 160, "png", "image/png"},
			{"scale", 641, 100, 800, 400, "png", "image/png"},
		}},
		{"gif", "image/gif", testGIF(t, 1000, 500, 1), []want{
			{"crop", 32, 32, 32, 32, "png", "image/png"},
			{"crop", 90, 90, 96, 96, "png", "image/png"},
			{"scale", 320, 240, 320, 160, "png", "image/png"},
			{"scale", 600, 400, 640, 320, "png", "image/png"},
		}},
		{"webp", "image/webp", []byte(webpImage), []want{
			{"crop", 32, 32, 32, 32, "png", "image/png"},
			{"crop", 96, 96, 96, 96, "png", "image/png"},
			{"scale", 100, 100, 320, 240, "png", "image/png"},
			{"scale", 500, 400, 400, 300, "webp", "image/webp"}, // fits the 640x480 size: the original
			{"scale", 300, 200, 320, 240, "png", "image/png"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mxc := uploadMedia(t, alice, tc.data, tc.ctype, "image")
			for _, w := range tc.wants {
				q := fmt.Sprintf("/thumbnail/%s?width=%d&height=%d&method=%s", mxcPath(mxc), w.width, w.height, w.method)
				start := time.Now()
				status, hdr, body := mediaGet(t, s, alice, mediaV1, q)
				if status != 200 {
					t.Fatalf("%s: %d %s", q, status, body)
				}
				t.Logf("%s %s %dx%d: %d bytes in %v", tc.name, w.method, w.width, w.height, len(body), time.Since(start))
				img, format := decodeAny(t, body)
				if b := img.Bounds(); b.Dx() != w.w || b.Dy() != w.h || format != w.format {
					t.Fatalf("%s: %s %dx%d, want %s %dx%d", q, format, b.Dx(), b.Dy(), w.format, w.w, w.h)
				}
				if hdr.Get("Content-Type") != w.ctype || hdr.Get("Content-Disposition") != `inline; filename="thumbnail.`+map[string]string{"jpeg": "jpg", "png": "png", "webp": "webp"}[w.format]+`"` ||
					hdr.Get("Content-Security-Policy") != cspWanted || hdr.Get("X-Content-Type-Options") != "nosniff" {
					t.Fatalf("%s: headers %v", q, hdr)
				}
				// The legacy endpoint answers the same, from the stored thumbnail.
				status, _, again := mediaGet(t, s, nil, mediaV3, q)
				if status != 200 || !bytes.Equal(again, body) {
					t.Fatalf("legacy %s: %d, %d bytes (want the same %d)", q, status, len(again), len(body))
				}
			}
		})
	}
	// Each thumbnail was made once: asking again adds no file.
	files := len(mediaFiles(t, s))
	mxcs := []id.ContentURI{uploadMedia(t, alice, testPNG(t, 1000, 500), "image/png", "")}
	for range 3 {
		mediaGet(t, s, alice, mediaV1, "/thumbnail/"+mxcPath(mxcs[0])+"?width=32&height=32&method=crop")
	}
	if got := len(mediaFiles(t, s)); got != files {
		t.Fatalf("repeated thumbnails changed the files from %d to %d", files, got)
	}
}

// TestMediaAnimatedThumbnails: animated=true gets the original animation, otherwise a still of
// its first frame.
func TestMediaAnimatedThumbnails(t *testing.T) {
	s := Start(t)
	alice := s.NewUser(t, "alice")
	for _, tc := range []struct {
		name, ctype string
		data        []byte
	}{{"gif", "image/gif", testGIF(t, 400, 300, 3)}, {"webp", "image/webp", []byte(animatedWebPImage)}} {
		t.Run(tc.name, func(t *testing.T) {
			mxc := uploadMedia(t, alice, tc.data, tc.ctype, "")
			base := "/thumbnail/" + mxcPath(mxc) + "?width=96&height=96&method=crop"
			status, hdr, body := mediaGet(t, s, alice, mediaV1, base+"&animated=true")
			if status != 200 || !bytes.Equal(body, tc.data) || hdr.Get("Content-Type") != tc.ctype {
				t.Fatalf("animated=true: %d %q, %d bytes", status, hdr.Get("Content-Type"), len(body))
			}
			for _, q := range []string{"", "&animated=false"} {
				status, hdr, body = mediaGet(t, s, alice, mediaV1, base+q)
				if status != 200 || hdr.Get("Content-Type") != "image/png" {
					t.Fatalf("%q: %d %q", q, status, hdr.Get("Content-Type"))
				}
				img, _ := decodeAny(t, body)
				if b := img.Bounds(); b.Dx() != 96 || b.Dy() != 96 {
					t.Fatalf("%q: still is %v", q, b)
				}
			}
			// Asked larger than any size, a still of the whole first frame.
			status, hdr, body = mediaGet(t, s, alice, mediaV1, "/thumbnail/"+mxcPath(mxc)+"?width=1000&height=1000")
			if img, _ := decodeAny(t, body); status != 200 || hdr.Get("Content-Type") != "image/png" || img.Bounds().Dx() != 400 {
				t.Fatalf("large still: %d %q", status, hdr.Get("Content-Type"))
			}
		})
	}
}

// TestMediaThumbnailErrors: content that is not an image, a decompression bomb, a broken image
// and bad parameters each get the spec's error, never a 500.
func TestMediaThumbnailErrors(t *testing.T) {
	s := Start(t)
	alice := s.NewUser(t, "alice")
	text := uploadMedia(t, alice, []byte("not an image"), "image/png", "")
	bomb := uploadMedia(t, alice, pngBomb(100000, 100000), "image/png", "bomb.png")
	broken := uploadMedia(t, alice, testJPEG(t, 200, 200)[:300], "image/jpeg", "")
	good := uploadMedia(t, alice, testPNG(t, 10, 10), "image/png", "")
	for _, tc := range []struct {
		mxc    id.ContentURI
		query  string
		status int
		code   string
	}{
		{text, "width=32&height=32", 400, "M_UNKNOWN"},
		{bomb, "width=32&height=32&method=crop", 413, "M_TOO_LARGE"},
		{bomb, "width=800&height=600", 413, "M_TOO_LARGE"},
		{broken, "width=32&height=32&method=crop", 400, "M_UNKNOWN"},
		{good, "width=abc&height=32", 400, "M_INVALID_PARAM"},
		{good, "width=32", 400, "M_MISSING_PARAM"},
		{good, "width=-1&height=32", 400, "M_INVALID_PARAM"},
		{good, "width=0&height=32", 400, "M_INVALID_PARAM"},
		{good, "width=32&height=99999999999999999999", 400, "M_INVALID_PARAM"},
		{good, "width=32&height=32&method=stretch", 400, "M_INVALID_PARAM"},
		{good, "width=32&height=32&animated=yes", 400, "M_INVALID_PARAM"},
	} {
		status, _, body := mediaGet(t, s, alice, mediaV1, "/thumbnail/"+mxcPath(tc.mxc)+"?"+tc.query)
		wantError(t, status, body, tc.status, tc.code)
	}
	// The bomb itself still downloads; only thumbnailing it is refused.
	status, _, body := mediaGet(t, s, alice, mediaV1, "/download/"+mxcPath(bomb))
	if status != 200 || !bytes.Equal(body, pngBomb(100000, 100000)) {
		t.Fatalf("download of the bomb: %d", status)
	}
	// An image smaller than requested comes back as it is.
	status, _, body = mediaGet(t, s, alice, mediaV1, "/thumbnail/"+mxcPath(good)+"?width=32&height=32")
	if status != 200 || !bytes.Equal(body, testPNG(t, 10, 10)) {
		t.Fatalf("small image: %d", status)
	}
}
