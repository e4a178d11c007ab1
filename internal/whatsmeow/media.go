package whatsmeow

import (
	"context"
	"encoding/json"
	"errors"

	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"google.golang.org/protobuf/proto"

	"github.com/wagate/wagate/internal/errs"
	"github.com/wagate/wagate/internal/events"
	"github.com/wagate/wagate/internal/sessions"
)

// mediaRef is what downloading the file of a received message needs again:
// where WhatsApp keeps it and the keys that decrypt and check it. It is
// events.MediaRef.Ref, JSON-encoded; the session manager seals it at rest.
// Only these fields are kept, not the whole message (caption, thumbnail,
// context), so a reference stays small.
type mediaRef struct {
	Kind          string `json:"kind"` // image, video, audio, document, sticker
	DirectPath    string `json:"direct_path,omitempty"`
	URL           string `json:"url,omitempty"`
	MediaKey      []byte `json:"media_key"`
	FileSHA256    []byte `json:"file_sha256,omitempty"`
	FileEncSHA256 []byte `json:"file_enc_sha256,omitempty"`
	FileLength    uint64 `json:"file_length,omitempty"`
	MimeType      string `json:"mime_type,omitempty"`
}

// downloadableFields is what every downloadable whatsmeow message has.
type downloadableFields interface {
	whatsmeow.DownloadableMessage
	GetURL() string
	GetFileLength() uint64
	GetMimetype() string
}

// mediaOf returns the media reference of a message with a file, nil for
// any other message or one without the keys a download needs.
func mediaOf(msg *waE2E.Message) *events.MediaRef {
	var kind, fileName string
	var x downloadableFields
	switch {
	case msg.GetImageMessage() != nil:
		kind, x = "image", msg.GetImageMessage()
	case msg.GetVideoMessage() != nil:
		kind, x = "video", msg.GetVideoMessage()
	case msg.GetPtvMessage() != nil:
		kind, x = "video", msg.GetPtvMessage()
	case msg.GetAudioMessage() != nil:
		kind, x = "audio", msg.GetAudioMessage()
	case msg.GetDocumentMessage() != nil:
		kind, x = "document", msg.GetDocumentMessage()
		fileName = msg.GetDocumentMessage().GetFileName()
	case msg.GetStickerMessage() != nil:
		kind, x = "sticker", msg.GetStickerMessage()
	default:
		return nil
	}
	if len(x.GetMediaKey()) == 0 || (x.GetDirectPath() == "" && x.GetURL() == "") {
		return nil
	}
	r := mediaRef{
		Kind: kind, DirectPath: x.GetDirectPath(), URL: x.GetURL(), MediaKey: x.GetMediaKey(),
		FileSHA256: x.GetFileSHA256(), FileEncSHA256: x.GetFileEncSHA256(),
		FileLength: x.GetFileLength(), MimeType: x.GetMimetype(),
	}
	if r.DirectPath != "" {
		// The URL carries a short-lived token; the direct path works with
		// whatever media hosts WhatsApp names at download time.
		r.URL = ""
	}
	b, err := json.Marshal(r)
	if err != nil {
		return nil // cannot happen: plain fields
	}
	size := int64(r.FileLength)
	if size < 0 {
		size = 0
	}
	return &events.MediaRef{Ref: b, MimeType: r.MimeType, FileName: fileName, Size: size}
}

// decodeMediaRef reads a reference made by mediaOf.
func decodeMediaRef(b []byte) (mediaRef, error) {
	var r mediaRef
	if err := json.Unmarshal(b, &r); err != nil || len(r.MediaKey) == 0 || (r.DirectPath == "" && r.URL == "") {
		return r, errs.E(errs.Invalid, "not a WhatsApp media reference (was the session's engine changed?)")
	}
	return r, nil
}

// downloadable rebuilds the message part whatsmeow downloads: its type
// decides the keys derived from MediaKey (a sticker uses the image ones).
func (r mediaRef) downloadable() (whatsmeow.DownloadableMessage, error) {
	var dp, url *string
	if r.DirectPath != "" {
		dp = proto.String(r.DirectPath)
	} else {
		url = proto.String(r.URL)
	}
	var length *uint64
	if r.FileLength > 0 {
		length = proto.Uint64(r.FileLength)
	}
	switch r.Kind {
	case "image":
		return &waE2E.ImageMessage{DirectPath: dp, URL: url, MediaKey: r.MediaKey, FileSHA256: r.FileSHA256,
			FileEncSHA256: r.FileEncSHA256, FileLength: length}, nil
	case "video":
		return &waE2E.VideoMessage{DirectPath: dp, URL: url, MediaKey: r.MediaKey, FileSHA256: r.FileSHA256,
			FileEncSHA256: r.FileEncSHA256, FileLength: length}, nil
	case "audio":
		return &waE2E.AudioMessage{DirectPath: dp, URL: url, MediaKey: r.MediaKey, FileSHA256: r.FileSHA256,
			FileEncSHA256: r.FileEncSHA256, FileLength: length}, nil
	case "document":
		return &waE2E.DocumentMessage{DirectPath: dp, URL: url, MediaKey: r.MediaKey, FileSHA256: r.FileSHA256,
			FileEncSHA256: r.FileEncSHA256, FileLength: length}, nil
	case "sticker":
		return &waE2E.StickerMessage{DirectPath: dp, URL: url, MediaKey: r.MediaKey, FileSHA256: r.FileSHA256,
			FileEncSHA256: r.FileEncSHA256, FileLength: length}, nil
	}
	return nil, errs.E(errs.Invalid, "media reference of unknown kind %q", r.Kind)
}

// Download implements sessions.Conn: it fetches and decrypts the file from
// WhatsApp's media servers, which needs a logged-in connection.
func (c *conn) Download(ctx context.Context, ref []byte, maxBytes int64) ([]byte, string, error) {
	r, err := decodeMediaRef(ref)
	if err != nil {
		return nil, "", err
	}
	if maxBytes > 0 && r.FileLength > uint64(maxBytes) {
		return nil, "", errs.E(errs.TooLarge, "the file is %d bytes; the limit is %d", r.FileLength, maxBytes)
	}
	msg, err := r.downloadable()
	if err != nil {
		return nil, "", err
	}
	if c.client.Store.ID == nil || !c.client.IsLoggedIn() {
		return nil, "", errs.E(errs.NotConnected, "session is not connected")
	}
	data, err := c.client.Download(ctx, msg)
	switch {
	case err == nil:
	case len(data) > 0 && (errors.Is(err, whatsmeow.ErrFileLengthMismatch) || errors.Is(err, whatsmeow.ErrInvalidMediaSHA256)):
		// Warnings: the file decrypted and its MAC matched, but the sender's
		// announced length or plaintext hash did not. WhatsApp clients show
		// such files too.
		c.log.Warn("media downloaded with a warning", "kind", r.Kind, "err", err)
	default:
		return nil, "", mapDownloadErr(err)
	}
	return data, r.MimeType, nil
}

// mapDownloadErr classifies a failed download. WhatsApp answers 403, 404
// or 410 for a file it no longer keeps (after some weeks, or once the
// sender deleted it); the phone could upload it again (a media retry),
// which wagate does not do yet.
func mapDownloadErr(err error) error {
	switch {
	case errors.Is(err, whatsmeow.ErrMediaDownloadFailedWith403), errors.Is(err, whatsmeow.ErrMediaDownloadFailedWith404),
		errors.Is(err, whatsmeow.ErrMediaDownloadFailedWith410):
		return errs.Wrap(sessions.CodeMediaExpired, err, "the file is no longer available on WhatsApp's servers")
	case errors.Is(err, whatsmeow.ErrInvalidMediaHMAC), errors.Is(err, whatsmeow.ErrInvalidMediaEncSHA256),
		errors.Is(err, whatsmeow.ErrTooShortFile):
		return errs.Wrap(errs.Unavailable, err, "the file from WhatsApp's servers failed its integrity check")
	case errors.Is(err, whatsmeow.ErrNoURLPresent), errors.Is(err, whatsmeow.ErrUnknownMediaType):
		return errs.Wrap(errs.NotFound, err, "the message has no downloadable file")
	}
	if e := mapErr(err, "downloading media from WhatsApp"); errs.CodeOf(e) != errs.Internal {
		return e
	}
	// Network failures, media hosts answering 5xx...: worth a retry later.
	return errs.Wrap(errs.Unavailable, err, "could not download the file from WhatsApp's servers")
}
