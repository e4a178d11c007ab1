package whatsmeow

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"google.golang.org/protobuf/proto"

	"github.com/wagate/wagate/internal/errs"
	"github.com/wagate/wagate/internal/events"
	"github.com/wagate/wagate/internal/sessions"
)

// TestMediaRefRoundTrip: a received image becomes an event whose media
// reference decodes to the downloadable message whatsmeow needs, while the
// payload and formatted output never show its keys. No network.
func TestMediaRefRoundTrip(t *testing.T) {
	c, sink := newTestConn(t)
	key := bytes.Repeat([]byte{0xAB}, 32)
	fileHash, encHash := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	img := &waE2E.ImageMessage{
		URL:           proto.String("https://mmg.whatsapp.net/v/t62.7118-24/abc.enc?oh=x&oe=y"),
		DirectPath:    proto.String("/v/t62.7118-24/abc.enc?ccb=11-4&oh=x&oe=y"),
		MediaKey:      key,
		FileSHA256:    fileHash,
		FileEncSHA256: encHash,
		FileLength:    proto.Uint64(1234),
		Mimetype:      proto.String("image/jpeg"),
		Caption:       proto.String("look"),
		JPEGThumbnail: bytes.Repeat([]byte{0xFF}, 2048),
	}
	if !c.handle(raw(dm("IMG1"), &waE2E.Message{ImageMessage: img})) {
		t.Fatal("handle returned false")
	}
	if len(sink.inbound) != 1 {
		t.Fatalf("events: %+v", sink.inbound)
	}
	in := sink.inbound[0]
	m := in.Media
	if m == nil || m.MimeType != "image/jpeg" || m.Size != 1234 || m.FileName != "" || len(m.Ref) == 0 {
		t.Fatalf("media ref = %+v", m)
	}
	if len(m.Ref) > 512 || bytes.Contains(m.Ref, []byte("look")) {
		t.Errorf("the reference carries more than the download needs (%d bytes): %s", len(m.Ref), m.Ref)
	}

	r, err := decodeMediaRef(m.Ref)
	if err != nil {
		t.Fatal(err)
	}
	dl, err := r.downloadable()
	if err != nil {
		t.Fatal(err)
	}
	got, ok := dl.(*waE2E.ImageMessage)
	if !ok {
		t.Fatalf("downloadable is %T, want *waE2E.ImageMessage", dl)
	}
	if got.GetDirectPath() != img.GetDirectPath() || !bytes.Equal(got.GetMediaKey(), key) ||
		!bytes.Equal(got.GetFileSHA256(), fileHash) || !bytes.Equal(got.GetFileEncSHA256(), encHash) ||
		got.GetFileLength() != 1234 || got.URL != nil {
		t.Errorf("downloadable = %v", got)
	}
	if mt := whatsmeow.GetMediaType(dl); mt != whatsmeow.MediaImage {
		t.Errorf("media type %q", mt)
	}

	// Keys stay out of the payload and out of formatted output.
	payload, err := events.BuildPayload("ev-1", 1, "s1", ownJID.User, in)
	if err != nil {
		t.Fatal(err)
	}
	secrets := []string{base64.StdEncoding.EncodeToString(key), string(key), "abc.enc", base64.StdEncoding.EncodeToString(m.Ref)}
	for _, out := range []string{string(payload), fmt.Sprintf("%v %+v %#v", in, in, *in.Media)} {
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Errorf("%q leaks into %s", s, out)
			}
		}
	}
	if !strings.Contains(string(payload), `"mime_type":"image/jpeg"`) || !strings.Contains(string(payload), `"file_size":1234`) {
		t.Errorf("payload lost the media description: %s", payload)
	}
}

func TestMediaOfEveryKind(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	dp := proto.String("/v/t62/x")
	tests := []struct {
		name  string
		msg   *waE2E.Message
		class string
		mt    whatsmeow.MediaType
		file  string
	}{
		{"video", &waE2E.Message{VideoMessage: &waE2E.VideoMessage{DirectPath: dp, MediaKey: key, Mimetype: proto.String("video/mp4")}},
			"*waE2E.VideoMessage", whatsmeow.MediaVideo, ""},
		{"video note", &waE2E.Message{PtvMessage: &waE2E.VideoMessage{DirectPath: dp, MediaKey: key}},
			"*waE2E.VideoMessage", whatsmeow.MediaVideo, ""},
		{"audio", &waE2E.Message{AudioMessage: &waE2E.AudioMessage{DirectPath: dp, MediaKey: key, PTT: proto.Bool(true)}},
			"*waE2E.AudioMessage", whatsmeow.MediaAudio, ""},
		{"document", &waE2E.Message{DocumentMessage: &waE2E.DocumentMessage{DirectPath: dp, MediaKey: key, FileName: proto.String("nota fiscal.pdf")}},
			"*waE2E.DocumentMessage", whatsmeow.MediaDocument, "nota fiscal.pdf"},
		{"sticker", &waE2E.Message{StickerMessage: &waE2E.StickerMessage{DirectPath: dp, MediaKey: key, Mimetype: proto.String("image/webp")}},
			"*waE2E.StickerMessage", whatsmeow.MediaImage, ""},
		{"url only", &waE2E.Message{ImageMessage: &waE2E.ImageMessage{URL: proto.String("https://mmg.whatsapp.net/x"), MediaKey: key}},
			"*waE2E.ImageMessage", whatsmeow.MediaImage, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ref := mediaOf(tt.msg)
			if ref == nil || ref.FileName != tt.file {
				t.Fatalf("ref = %+v", ref)
			}
			r, err := decodeMediaRef(ref.Ref)
			if err != nil {
				t.Fatal(err)
			}
			dl, err := r.downloadable()
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprintf("%T", dl) != tt.class || whatsmeow.GetMediaType(dl) != tt.mt || !bytes.Equal(dl.GetMediaKey(), key) {
				t.Errorf("downloadable %T (%s)", dl, whatsmeow.GetMediaType(dl))
			}
			if tt.name == "url only" && dl.(*waE2E.ImageMessage).GetURL() == "" {
				t.Error("URL dropped when it is the only location")
			}
		})
	}
	// Nothing to download: no reference.
	for _, msg := range []*waE2E.Message{
		{Conversation: proto.String("text")},
		{ImageMessage: &waE2E.ImageMessage{Mimetype: proto.String("image/jpeg")}}, // no key
		{ImageMessage: &waE2E.ImageMessage{MediaKey: key}},                        // nowhere to fetch
	} {
		if ref := mediaOf(msg); ref != nil {
			t.Errorf("mediaOf(%v) = %+v", msg, ref)
		}
	}
	if _, err := decodeMediaRef([]byte("{}")); !errs.Is(err, errs.Invalid) {
		t.Errorf("empty ref: %v", err)
	}
	if _, err := (mediaRef{Kind: "poll", DirectPath: "/x", MediaKey: key}).downloadable(); !errs.Is(err, errs.Invalid) {
		t.Errorf("unknown kind: %v", err)
	}
}

func TestDownloadWithoutNetwork(t *testing.T) {
	c, _ := newTestConn(t)
	ctx := context.Background()
	ref := mediaOf(&waE2E.Message{ImageMessage: &waE2E.ImageMessage{DirectPath: proto.String("/v/x"),
		MediaKey: []byte("k"), FileLength: proto.Uint64(10 << 20)}}).Ref
	if _, _, err := c.Download(ctx, ref, 1<<20); !errs.Is(err, errs.TooLarge) {
		t.Errorf("too large: %v", err)
	}
	if _, _, err := c.Download(ctx, ref, 64<<20); !errs.Is(err, errs.NotConnected) {
		t.Errorf("never connected: %v", err)
	}
	if _, _, err := c.Download(ctx, []byte("garbage"), 0); !errs.Is(err, errs.Invalid) {
		t.Errorf("garbage ref: %v", err)
	}

	cases := map[error]errs.Code{
		whatsmeow.ErrMediaDownloadFailedWith404:                                        sessions.CodeMediaExpired,
		fmt.Errorf("x: %w", whatsmeow.ErrMediaDownloadFailedWith410):                   sessions.CodeMediaExpired,
		whatsmeow.ErrMediaDownloadFailedWith403:                                        sessions.CodeMediaExpired,
		whatsmeow.DownloadHTTPError{Response: &http.Response{StatusCode: 500}}:         errs.Unavailable,
		whatsmeow.ErrInvalidMediaHMAC:                                                  errs.Unavailable,
		whatsmeow.ErrNoURLPresent:                                                      errs.NotFound,
		whatsmeow.ErrNotLoggedIn:                                                       errs.NotConnected,
		errors.New("failed to refresh media connections: something"):                   errs.Unavailable,
		fmt.Errorf("failed to refresh media connections: %w", whatsmeow.ErrIQTimedOut): errs.Unavailable,
	}
	for in, want := range cases {
		if got := errs.CodeOf(mapDownloadErr(in)); got != want {
			t.Errorf("mapDownloadErr(%v) = %s, want %s", in, got, want)
		}
	}
}
