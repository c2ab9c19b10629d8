package mediaapi

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"

	"golang.org/x/image/draw"
	"golang.org/x/image/webp"
)

// Image formats that can be thumbnailed, by the name sniffFormat gives them.
const (
	formatJPEG = "jpeg"
	formatPNG  = "png"
	formatGIF  = "gif"
	formatWebP = "webp"
)

var (
	// errNotImage: the content is not an image of a format we thumbnail.
	errNotImage = errors.New("not an image that can be thumbnailed")
	// errImageTooLarge: the image's header claims more pixels than max_image_pixels.
	errImageTooLarge = errors.New("image too large to thumbnail")
)

// formatTypes are the content types of the formats.
var formatTypes = map[string]string{
	formatJPEG: "image/jpeg", formatPNG: "image/png", formatGIF: "image/gif", formatWebP: "image/webp",
}

// sniffFormat names the image format of content from its first bytes, "" if none we handle.
// The stored content type is the uploader's claim and is not trusted for decoding.
func sniffFormat(head []byte) string {
	switch {
	case bytes.HasPrefix(head, []byte("\xff\xd8\xff")):
		return formatJPEG
	case bytes.HasPrefix(head, []byte("\x89PNG\r\n\x1a\n")):
		return formatPNG
	case bytes.HasPrefix(head, []byte("GIF87a")), bytes.HasPrefix(head, []byte("GIF89a")):
		return formatGIF
	case len(head) >= 12 && string(head[:4]) == "RIFF" && string(head[8:12]) == "WEBP":
		return formatWebP
	}
	return ""
}

// imageInfo is what probe learns of an image without decoding its pixels.
type imageInfo struct {
	format        string
	width, height int
	animated      bool // more than one frame (GIF) or the animation flag (WebP)
}

// probe reads an image's format, dimensions and whether it is animated from its headers,
// refusing images of more than maxPixels pixels (decompression bombs: a few bytes can claim
// a huge canvas) before anything is decoded. r is left at an unspecified offset.
func probe(r io.ReadSeeker, maxPixels int64) (imageInfo, error) {
	head := make([]byte, 16)
	n, _ := io.ReadFull(r, head)
	info := imageInfo{format: sniffFormat(head[:n])}
	if info.format == "" {
		return info, errNotImage
	}
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return info, err
	}
	var cfg image.Config
	var err error
	switch info.format {
	case formatJPEG:
		cfg, err = jpeg.DecodeConfig(bufio.NewReader(r))
	case formatPNG:
		cfg, err = png.DecodeConfig(bufio.NewReader(r))
	case formatGIF:
		cfg, err = gif.DecodeConfig(bufio.NewReader(r))
	case formatWebP:
		cfg, err = webp.DecodeConfig(bufio.NewReader(r))
	}
	if err != nil {
		return info, fmt.Errorf("%w: %v", errNotImage, err)
	}
	info.width, info.height = cfg.Width, cfg.Height
	if info.width <= 0 || info.height <= 0 {
		return info, errNotImage
	}
	if int64(info.width)*int64(info.height) > maxPixels {
		return info, errImageTooLarge
	}
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return info, err
	}
	switch info.format {
	case formatGIF:
		frames, err := gifFrames(bufio.NewReader(r), 2)
		if err != nil {
			return info, fmt.Errorf("%w: %v", errNotImage, err)
		}
		info.animated = frames > 1
	case formatWebP:
		info.animated, err = webpAnimated(r)
		if err != nil {
			return info, fmt.Errorf("%w: %v", errNotImage, err)
		}
	}
	return info, nil
}

// decodeStill decodes an image probed before; of an animation, the first frame.
func decodeStill(r io.ReadSeeker, info imageInfo, maxPixels int64) (image.Image, error) {
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	var img image.Image
	var err error
	switch info.format {
	case formatJPEG:
		img, err = jpeg.Decode(bufio.NewReader(r))
	case formatPNG:
		img, err = png.Decode(bufio.NewReader(r))
	case formatGIF:
		img, err = gif.Decode(bufio.NewReader(r)) // the first frame only
	case formatWebP:
		if info.animated {
			var still []byte
			if still, err = webpFirstFrame(r, maxPixels); err == nil {
				img, err = webp.Decode(bytes.NewReader(still))
			}
		} else {
			img, err = webp.Decode(bufio.NewReader(r))
		}
	default:
		return nil, errNotImage
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errNotImage, err)
	}
	return img, nil
}

// gifFrames counts the frames of a GIF (GIF89a specification: header, logical screen
// descriptor, then extension and image blocks up to the trailer) by skipping over their
// data, stopping at max.
func gifFrames(r *bufio.Reader, max int) (int, error) {
	var hdr [13]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, err
	}
	if hdr[10]&0x80 != 0 { // global color table
		if _, err := r.Discard(3 << (hdr[10]&7 + 1)); err != nil {
			return 0, err
		}
	}
	frames := 0
	for frames < max {
		b, err := r.ReadByte()
		if err != nil {
			return frames, nil // a truncated file: the frames so far are what decoders show
		}
		switch b {
		case 0x21: // extension: label, then data sub-blocks
			if _, err := r.ReadByte(); err != nil {
				return frames, nil
			}
		case 0x2c: // image descriptor, optional local color table, LZW code size, sub-blocks
			var d [9]byte
			if _, err := io.ReadFull(r, d[:]); err != nil {
				return frames, nil
			}
			if d[8]&0x80 != 0 {
				if _, err := r.Discard(3 << (d[8]&7 + 1)); err != nil {
					return frames, nil
				}
			}
			if _, err := r.ReadByte(); err != nil {
				return frames, nil
			}
			frames++
		case 0x3b: // trailer
			return frames, nil
		default:
			return frames, fmt.Errorf("gif: unknown block 0x%02x", b)
		}
		if err := skipSubBlocks(r); err != nil {
			return frames, nil
		}
	}
	return frames, nil
}

func skipSubBlocks(r *bufio.Reader) error {
	for {
		n, err := r.ReadByte()
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		if _, err := r.Discard(int(n)); err != nil {
			return err
		}
	}
}

// webpChunk is one chunk of a WebP RIFF container (WebP container specification).
type webpChunk struct {
	id   string
	size uint32
}

// webpChunks calls fn for each top-level chunk of a WebP file with a reader of its payload;
// fn returns false to stop.
func webpChunks(r io.Reader, fn func(c webpChunk, payload io.Reader) (bool, error)) error {
	br := bufio.NewReader(r)
	var hdr [12]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return err
	}
	for {
		var ch [8]byte
		if _, err := io.ReadFull(br, ch[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		c := webpChunk{id: string(ch[:4]), size: binary.LittleEndian.Uint32(ch[4:])}
		lr := &io.LimitedReader{R: br, N: int64(c.size)}
		more, err := fn(c, lr)
		if err != nil || !more {
			return err
		}
		// Skip what fn left, and the padding byte of odd-sized chunks.
		if _, err := io.Copy(io.Discard, lr); err != nil {
			return err
		}
		if c.size%2 == 1 {
			if _, err := br.Discard(1); err != nil && !errors.Is(err, io.EOF) {
				return err
			}
		}
	}
}

// webpAnimated reports whether a WebP file's VP8X chunk sets the animation flag.
func webpAnimated(r io.ReadSeeker) (bool, error) {
	animated := false
	err := webpChunks(r, func(c webpChunk, payload io.Reader) (bool, error) {
		if c.id == "VP8X" {
			var flags [1]byte
			if _, err := io.ReadFull(payload, flags[:]); err != nil {
				return false, err
			}
			animated = flags[0]&0x02 != 0
		}
		return false, nil // VP8X, when there is one, is the first chunk
	})
	return animated, err
}

// webpFirstFrame builds a still WebP file from the first frame (ANMF chunk) of an animated
// one: its bitstream chunks (ALPH, VP8 or VP8L) in a new container, with a VP8X header when
// the frame has a separate alpha chunk.
func webpFirstFrame(r io.Reader, maxPixels int64) ([]byte, error) {
	var frame []byte
	err := webpChunks(r, func(c webpChunk, payload io.Reader) (bool, error) {
		if c.id != "ANMF" {
			return true, nil
		}
		if c.size < 16 || int64(c.size) > 4*maxPixels+1<<20 {
			return false, errors.New("webp: bad frame size")
		}
		frame = make([]byte, c.size)
		_, err := io.ReadFull(payload, frame)
		return false, err
	})
	if err != nil {
		return nil, err
	}
	if frame == nil {
		return nil, errors.New("webp: animation without frames")
	}
	w := int(frame[6]) | int(frame[7])<<8 | int(frame[8])<<16 + 1
	h := int(frame[9]) | int(frame[10])<<8 | int(frame[11])<<16 + 1
	if int64(w)*int64(h) > maxPixels {
		return nil, errImageTooLarge
	}
	data := frame[16:]
	var body bytes.Buffer
	body.WriteString("WEBP")
	if bytes.HasPrefix(data, []byte("ALPH")) {
		vp8x := make([]byte, 18)
		copy(vp8x, "VP8X")
		binary.LittleEndian.PutUint32(vp8x[4:], 10)
		vp8x[8] = 0x10 // alpha
		putUint24(vp8x[12:], w-1)
		putUint24(vp8x[15:], h-1)
		body.Write(vp8x)
	}
	body.Write(data)
	out := make([]byte, 8, 8+body.Len())
	copy(out, "RIFF")
	binary.LittleEndian.PutUint32(out[4:], uint32(body.Len()))
	return append(out, body.Bytes()...), nil
}

func putUint24(b []byte, v int) {
	b[0], b[1], b[2] = byte(v), byte(v>>8), byte(v>>16)
}

// scaleSize is the size of a "scale" thumbnail of a sw×sh image for a bw×bh box: the largest
// that keeps the aspect ratio and fits in the box, never larger than the image.
func scaleSize(sw, sh, bw, bh int) (int, int) {
	if sw <= bw && sh <= bh {
		return sw, sh
	}
	if int64(sw)*int64(bh) >= int64(sh)*int64(bw) { // wider than the box: width decides
		return bw, max(1, int((int64(sh)*int64(bw)+int64(sw)/2)/int64(sw)))
	}
	return max(1, int((int64(sw)*int64(bh)+int64(sh)/2)/int64(sh))), bh
}

// cropRegion is the centred part of a sw×sh image with the aspect ratio of tw×th, and the
// size of the "crop" thumbnail made of it: tw×th, or the region's own size when it is smaller
// (never upscaled).
func cropRegion(sw, sh, tw, th int) (image.Rectangle, int, int) {
	rw, rh := sw, sh
	if int64(sw)*int64(th) > int64(sh)*int64(tw) {
		rw = max(1, int(int64(sh)*int64(tw)/int64(th)))
	} else {
		rh = max(1, int(int64(sw)*int64(th)/int64(tw)))
	}
	x, y := (sw-rw)/2, (sh-rh)/2
	region := image.Rect(x, y, x+rw, y+rh)
	if rw <= tw && rh <= th {
		return region, rw, rh
	}
	return region, tw, th
}

// resize makes the thumbnail of img with a method at a pre-set size. draw.BiLinear widens
// its kernel by the scale factor, so large reductions average every source pixel instead of
// skipping most of them.
func resize(img image.Image, method string, tw, th int) image.Image {
	b := img.Bounds()
	src := b
	var ow, oh int
	if method == methodCrop {
		var region image.Rectangle
		region, ow, oh = cropRegion(b.Dx(), b.Dy(), tw, th)
		src = region.Add(b.Min)
	} else {
		ow, oh = scaleSize(b.Dx(), b.Dy(), tw, th)
	}
	dst := image.NewRGBA(image.Rect(0, 0, ow, oh))
	if src.Dx() == ow && src.Dy() == oh {
		draw.Copy(dst, image.Point{}, img, src, draw.Src, nil)
	} else {
		draw.BiLinear.Scale(dst, dst.Bounds(), img, src, draw.Src, nil)
	}
	return dst
}

// encodeThumbnail encodes a thumbnail: JPEG for JPEG sources, PNG (which keeps
// transparency) for the rest; both are types the spec lets us serve inline.
func encodeThumbnail(img image.Image, srcFormat string) ([]byte, string, error) {
	var buf bytes.Buffer
	if srcFormat == formatJPEG {
		if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 85}); err != nil {
			return nil, "", err
		}
		return buf.Bytes(), "image/jpeg", nil
	}
	enc := png.Encoder{CompressionLevel: png.BestSpeed}
	if err := enc.Encode(&buf, img); err != nil {
		return nil, "", err
	}
	return buf.Bytes(), "image/png", nil
}
