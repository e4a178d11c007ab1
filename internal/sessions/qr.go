package sessions

import (
	"bytes"
	"image"
	"image/color"
	"image/png"

	qrcode "github.com/yeqown/go-qrcode/v2"

	"github.com/wagate/wagate/internal/errs"
)

// QR image sizes the API accepts, in pixels.
const (
	QRMinSize     = 64
	QRMaxSize     = 1024
	QRDefaultSize = 256
)

// qrQuiet is the white border the QR specification asks for, in modules.
const qrQuiet = 4

// QRPNG renders a QR code as a black-on-white PNG of about size pixels
// square (rounded down to whole modules, never below one pixel each).
func QRPNG(code string, size int) ([]byte, error) {
	q, err := qrcode.NewWith(code, qrcode.WithErrorCorrectionLevel(qrcode.ErrorCorrectionMedium))
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "encoding QR code")
	}
	w := &matrixWriter{}
	if err := q.Save(w); err != nil {
		return nil, errs.Wrap(errs.Internal, err, "encoding QR code")
	}
	mat := w.mat
	modules := mat.Width() + 2*qrQuiet
	scale := max(size/modules, 1)
	side := modules * scale
	img := image.NewPaletted(image.Rect(0, 0, side, side), color.Palette{color.White, color.Black})
	mat.Iterate(qrcode.IterDirection_ROW, func(x, y int, v qrcode.QRValue) {
		if !v.IsSet() {
			return
		}
		x0, y0 := (x+qrQuiet)*scale, (y+qrQuiet)*scale
		for dy := range scale {
			row := img.Pix[(y0+dy)*img.Stride+x0:]
			for dx := range scale {
				row[dx] = 1
			}
		}
	})
	var buf bytes.Buffer
	if err := (&png.Encoder{CompressionLevel: png.BestSpeed}).Encode(&buf, img); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// matrixWriter keeps the module matrix; the library's own image writers
// live in a separate module with a graphics stack we do not need.
type matrixWriter struct{ mat qrcode.Matrix }

func (w *matrixWriter) Write(mat qrcode.Matrix) error { w.mat = mat; return nil }
func (w *matrixWriter) Close() error                  { return nil }
