package mediaapi

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"strings"
	"testing"
)

func testImage(w, h int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.RGBA{uint8(x), uint8(y), 128, 255})
		}
	}
	return img
}

func encodeAs(t *testing.T, format string, w, h int) []byte {
	t.Helper()
	var buf bytes.Buffer
	img := testImage(w, h)
	var err error
	switch format {
	case formatJPEG:
		err = jpeg.Encode(&buf, img, nil)
	case formatPNG:
		err = png.Encode(&buf, img)
	case formatGIF:
		err = gif.Encode(&buf, img, nil)
	case "animated-gif":
		pal := color.Palette{color.Black, color.White}
		g := &gif.GIF{}
		for i := range 3 {
			p := image.NewPaletted(image.Rect(0, 0, w, h), pal)
			p.Pix[0] = uint8(i % 2)
			g.Image, g.Delay = append(g.Image, p), append(g.Delay, 5)
		}
		err = gif.EncodeAll(&buf, g)
	case formatWebP:
		return []byte(stillWebP)
	}
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// bombPNG is a valid PNG signature and IHDR chunk claiming w×h pixels, with no image data.
func bombPNG(w, h uint32) []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8], ihdr[9] = 8, 6 // 8-bit RGBA
	chunk := append([]byte("IHDR"), ihdr...)
	binary.Write(&b, binary.BigEndian, uint32(len(ihdr)))
	b.Write(chunk)
	binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(chunk))
	return b.Bytes()
}

func TestProbe(t *testing.T) {
	for _, tc := range []struct {
		name     string
		data     []byte
		format   string
		w, h     int
		animated bool
	}{
		{"jpeg", encodeAs(t, formatJPEG, 40, 30), formatJPEG, 40, 30, false},
		{"png", encodeAs(t, formatPNG, 40, 30), formatPNG, 40, 30, false},
		{"gif", encodeAs(t, formatGIF, 40, 30), formatGIF, 40, 30, false},
		{"animated gif", encodeAs(t, "animated-gif", 40, 30), formatGIF, 40, 30, true},
		{"webp", []byte(stillWebP), formatWebP, 400, 300, false},
		{"animated webp", []byte(animatedWebP), formatWebP, 400, 300, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			info, err := probe(bytes.NewReader(tc.data), 1e6)
			if err != nil {
				t.Fatal(err)
			}
			if info.format != tc.format || info.width != tc.w || info.height != tc.h || info.animated != tc.animated {
				t.Fatalf("probe: %+v", info)
			}
			img, err := decodeStill(bytes.NewReader(tc.data), info, 1e6)
			if err != nil {
				t.Fatal(err)
			}
			if b := img.Bounds(); b.Dx() != tc.w || b.Dy() != tc.h {
				t.Fatalf("decoded %v", b)
			}
		})
	}
	if _, err := probe(bytes.NewReader(bombPNG(100000, 100000)), 32e6); !errors.Is(err, errImageTooLarge) {
		t.Fatalf("bomb: %v", err)
	}
	for _, bad := range []string{"", "hello", "GIF89a", "\x89PNG\r\n\x1a\nxx", "RIFF\x00\x00\x00\x00WEBPVP8 ", "\xff\xd8\xff\xe0"} {
		if _, err := probe(strings.NewReader(bad), 32e6); !errors.Is(err, errNotImage) {
			t.Errorf("probe(%q) = %v, want errNotImage", bad, err)
		}
	}
}

// TestAnimatedWebPFirstFrame checks that the still of an animated WebP is its first frame.
func TestAnimatedWebPFirstFrame(t *testing.T) {
	info, err := probe(strings.NewReader(animatedWebP), 1e6)
	if err != nil {
		t.Fatal(err)
	}
	img, err := decodeStill(strings.NewReader(animatedWebP), info, 1e6)
	if err != nil {
		t.Fatal(err)
	}
	r, g, b, _ := img.At(10, 10).RGBA()
	if r>>8 < 200 || g>>8 > 50 || b>>8 > 50 {
		t.Fatalf("first frame pixel is %d,%d,%d, want red", r>>8, g>>8, b>>8)
	}
	if _, err := webpFirstFrame(strings.NewReader(animatedWebP), 100); !errors.Is(err, errImageTooLarge) {
		t.Fatalf("frame over the pixel limit: %v", err)
	}
}

func TestScaleAndCropSizes(t *testing.T) {
	for _, tc := range []struct{ sw, sh, bw, bh, w, h int }{
		{1000, 500, 320, 240, 320, 160},
		{500, 1000, 320, 240, 120, 240},
		{800, 600, 320, 240, 320, 240},
		{300, 200, 320, 240, 300, 200},
		{10000, 1, 800, 600, 800, 1},
	} {
		if w, h := scaleSize(tc.sw, tc.sh, tc.bw, tc.bh); w != tc.w || h != tc.h {
			t.Errorf("scale %dx%d into %dx%d = %dx%d, want %dx%d", tc.sw, tc.sh, tc.bw, tc.bh, w, h, tc.w, tc.h)
		}
	}
	for _, tc := range []struct {
		sw, sh, tw, th int
		region         image.Rectangle
		w, h           int
	}{
		{1000, 500, 32, 32, image.Rect(250, 0, 750, 500), 32, 32},
		{500, 1000, 96, 96, image.Rect(0, 250, 500, 750), 96, 96},
		{20, 100, 96, 96, image.Rect(0, 40, 20, 60), 20, 20},
	} {
		region, w, h := cropRegion(tc.sw, tc.sh, tc.tw, tc.th)
		if region != tc.region || w != tc.w || h != tc.h {
			t.Errorf("crop %dx%d to %dx%d = %v %dx%d", tc.sw, tc.sh, tc.tw, tc.th, region, w, h)
		}
	}
	img := resize(testImage(1000, 500), methodCrop, 96, 96)
	if b := img.Bounds(); b.Dx() != 96 || b.Dy() != 96 {
		t.Fatalf("crop gave %v", b)
	}
	img = resize(testImage(1000, 500), methodScale, 640, 480)
	if b := img.Bounds(); b.Dx() != 640 || b.Dy() != 320 {
		t.Fatalf("scale gave %v", b)
	}
}

func TestChooseSize(t *testing.T) {
	for _, tc := range []struct {
		method string
		w, h   int
		want   thumbSize
		ok     bool
	}{
		{methodCrop, 1, 1, thumbSize{methodCrop, 32, 32}, true},
		{methodCrop, 32, 32, thumbSize{methodCrop, 32, 32}, true},
		{methodCrop, 33, 10, thumbSize{methodCrop, 96, 96}, true},
		{methodCrop, 96, 97, thumbSize{}, false},
		{methodScale, 32, 32, thumbSize{methodScale, 320, 240}, true},
		{methodScale, 320, 241, thumbSize{methodScale, 640, 480}, true},
		{methodScale, 700, 100, thumbSize{methodScale, 800, 600}, true},
		{methodScale, 801, 1, thumbSize{}, false},
	} {
		got, ok := chooseSize(tc.method, tc.w, tc.h)
		if got != tc.want || ok != tc.ok {
			t.Errorf("chooseSize(%s, %d, %d) = %+v %v, want %+v %v", tc.method, tc.w, tc.h, got, ok, tc.want, tc.ok)
		}
	}
}

func TestGIFFrames(t *testing.T) {
	data := encodeAs(t, "animated-gif", 10, 10)
	if _, err := gif.DecodeAll(bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	for max, want := range map[int]int{1: 1, 2: 2, 10: 3} {
		n, err := gifFrames(bufio.NewReader(bytes.NewReader(data)), max)
		if err != nil || n != want {
			t.Errorf("gifFrames(max %d) = %d, %v; want %d", max, n, err, want)
		}
	}
}

// BenchmarkThumbnail decodes a 12-megapixel JPEG and makes its largest and smallest
// thumbnails, the work of a first thumbnail request for a phone photo.
func BenchmarkThumbnail(b *testing.B) {
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, testImage(4000, 3000), &jpeg.Options{Quality: 90}); err != nil {
		b.Fatal(err)
	}
	data := buf.Bytes()
	for b.Loop() {
		info, err := probe(bytes.NewReader(data), 32e6)
		if err != nil {
			b.Fatal(err)
		}
		img, err := decodeStill(bytes.NewReader(data), info, 32e6)
		if err != nil {
			b.Fatal(err)
		}
		for _, size := range []thumbSize{{methodScale, 800, 600}, {methodCrop, 32, 32}} {
			if _, _, err := encodeThumbnail(resize(img, size.method, size.width, size.height), info.format); err != nil {
				b.Fatal(err)
			}
		}
	}
}
