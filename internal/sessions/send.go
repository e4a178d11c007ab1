package sessions

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/wagate/wagate/internal/errs"
	"github.com/wagate/wagate/internal/ssrf"
)

// Message types a client can send.
const (
	KindText     = "text"
	KindImage    = "image"
	KindVideo    = "video"
	KindAudio    = "audio"
	KindDocument = "document"
	KindLocation = "location"
	KindContact  = "contact"
	KindReaction = "reaction"
)

func isMedia(kind string) bool {
	switch kind {
	case KindImage, KindVideo, KindAudio, KindDocument:
		return true
	}
	return false
}

// Send sends a message. With an idempotency key, the key is claimed before
// anything is sent, so a retry (even a concurrent one) returns the first
// result instead of sending twice; the same key with another body is a
// conflict.
func (m *Manager) Send(ctx context.Context, clientID int64, id string, req SendRequest, idempotencyKey string) (SendResponse, error) {
	s, err := m.owned(ctx, clientID, id)
	if err != nil {
		return SendResponse{}, err
	}
	out, err := m.outbound(req)
	if err != nil {
		return SendResponse{}, err
	}
	if idempotencyKey == "" {
		l, err := m.connected(s)
		if err != nil {
			return SendResponse{}, err
		}
		return m.send(ctx, l, req, out)
	}

	if !validID(idempotencyKey, MaxIdempotencyKeyLen) {
		return SendResponse{}, errs.E(errs.Invalid, "Idempotency-Key must be 1 to %d printable characters without spaces", MaxIdempotencyKeyLen)
	}
	body, err := json.Marshal(req)
	if err != nil {
		return SendResponse{}, err
	}
	sum := sha256.Sum256(body)
	hash := hex.EncodeToString(sum[:])
	claim, err := m.store.ClaimOutbound(ctx, id, idempotencyKey, hash, m.now().Add(-m.opts.IdempotencyStale))
	if err != nil {
		return SendResponse{}, err
	}
	switch {
	case !claim.Claimed && claim.RequestHash != hash:
		return SendResponse{}, errs.E(errs.Conflict, "Idempotency-Key was already used with a different request body; use a new key for a new message")
	case !claim.Claimed && claim.MessageID != "":
		return SendResponse{MessageID: claim.MessageID, Timestamp: claim.SentAt, Replayed: true}, nil
	case !claim.Claimed:
		return SendResponse{}, errs.E(errs.Conflict, "a request with this Idempotency-Key is still being processed; retry later")
	}

	res, err := func() (SendResponse, error) {
		l, err := m.connected(s)
		if err != nil {
			return SendResponse{}, err
		}
		return m.send(ctx, l, req, out)
	}()
	// The outcome is recorded even if the caller went away meanwhile.
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	if err != nil {
		// Nothing was sent: the key is free for a retry.
		if rerr := m.store.ReleaseOutbound(dctx, id, idempotencyKey); rerr != nil {
			m.log.Warn("releasing idempotency key", "session_id", id, "err", rerr)
		}
		return SendResponse{}, err
	}
	if cerr := m.store.CompleteOutbound(dctx, id, idempotencyKey, res.MessageID, res.Timestamp); cerr != nil {
		// Sent, but a retry would send again: say so loudly, answer the truth.
		m.log.Error("recording idempotent send failed", "session_id", id, "message_id", res.MessageID, "err", cerr)
	}
	return res, nil
}

// send fetches the media and hands the message to the connection.
func (m *Manager) send(ctx context.Context, l *live, req SendRequest, out Outbound) (SendResponse, error) {
	if isMedia(out.Type) {
		if err := m.loadMedia(ctx, req, &out); err != nil {
			return SendResponse{}, err
		}
	}
	r, err := l.conn.Send(ctx, out)
	if err != nil {
		return SendResponse{}, err
	}
	ts := r.Timestamp
	if ts.IsZero() {
		ts = m.now()
	}
	m.log.Debug("message sent", "session_id", l.id, "message_id", r.MessageID, "type", out.Type)
	return SendResponse{MessageID: r.MessageID, Timestamp: ts.UTC().Truncate(time.Millisecond)}, nil
}

// outbound validates a send request into an Outbound (media not loaded).
func (m *Manager) outbound(req SendRequest) (Outbound, error) {
	to, err := NormalizeRecipient("to", req.To)
	if err != nil {
		return Outbound{}, err
	}
	kind := strings.ToLower(strings.TrimSpace(req.Type))
	if kind == "" {
		kind = KindText
	}
	out := Outbound{To: to, Type: kind, ReplyTo: strings.TrimSpace(req.ReplyTo)}
	if out.ReplyTo != "" && !ValidMessageID(out.ReplyTo) {
		return Outbound{}, errs.E(errs.Invalid, "reply_to is not a message id")
	}
	switch kind {
	case KindText:
		if strings.TrimSpace(req.Text) == "" {
			return Outbound{}, errs.E(errs.Invalid, "text is required for a text message")
		}
		if err := checkText("text", req.Text); err != nil {
			return Outbound{}, err
		}
		out.Text = req.Text
	case KindImage, KindVideo, KindAudio, KindDocument:
		if (req.MediaURL == "") == (req.MediaBase64 == "") {
			return Outbound{}, errs.E(errs.Invalid, "a %s message needs exactly one of media_url or media_base64", kind)
		}
		if req.MediaURL != "" {
			if err := checkMediaURL(req.MediaURL); err != nil {
				return Outbound{}, err
			}
		}
		if err := checkText("caption", req.Caption); err != nil {
			return Outbound{}, err
		}
		if req.MimeType != "" {
			if _, _, err := mime.ParseMediaType(req.MimeType); err != nil {
				return Outbound{}, errs.E(errs.Invalid, "mime_type %q is not a media type", req.MimeType)
			}
		}
		if len(req.FileName) > 255 || strings.ContainsAny(req.FileName, "/\\\x00") {
			return Outbound{}, errs.E(errs.Invalid, "file_name must be a plain file name of at most 255 bytes")
		}
		out.Caption, out.FileName, out.MimeType = req.Caption, req.FileName, req.MimeType
		out.Voice = req.Voice && kind == KindAudio
		if kind == KindDocument && out.FileName == "" {
			out.FileName = "document"
		}
	case KindLocation:
		if req.Latitude == nil || req.Longitude == nil {
			return Outbound{}, errs.E(errs.Invalid, "latitude and longitude are required for a location")
		}
		lat, lng := *req.Latitude, *req.Longitude
		if math.IsNaN(lat) || lat < -90 || lat > 90 || math.IsNaN(lng) || lng < -180 || lng > 180 {
			return Outbound{}, errs.E(errs.Invalid, "latitude must be within ±90 and longitude within ±180")
		}
		if len(req.Name) > 1024 || len(req.Address) > 1024 {
			return Outbound{}, errs.E(errs.Invalid, "name and address must be at most 1024 bytes")
		}
		out.Latitude, out.Longitude, out.Name, out.Address = lat, lng, req.Name, req.Address
	case KindContact:
		v := strings.TrimSpace(req.VCard)
		if !strings.HasPrefix(strings.ToUpper(v), "BEGIN:VCARD") || len(v) > MaxTextLen {
			return Outbound{}, errs.E(errs.Invalid, "vcard is required and must be a vCard (BEGIN:VCARD ... END:VCARD)")
		}
		out.VCard, out.Name = v, strings.TrimSpace(req.Name)
		if out.Name == "" {
			out.Name = vcardName(v)
		}
	case KindReaction:
		if !ValidMessageID(req.MessageID) {
			return Outbound{}, errs.E(errs.Invalid, "message_id (the message reacted to) is required for a reaction")
		}
		if req.Emoji == nil {
			return Outbound{}, errs.E(errs.Invalid, `emoji is required for a reaction ("" removes one)`)
		}
		if len(*req.Emoji) > 64 {
			return Outbound{}, errs.E(errs.Invalid, "emoji must be a single emoji")
		}
		out.Emoji, out.TargetID, out.ReplyTo = *req.Emoji, req.MessageID, ""
	default:
		return Outbound{}, errs.E(errs.Invalid, "type must be one of text, image, video, audio, document, location, contact, reaction")
	}
	if strings.TrimSpace(req.TargetSender) != "" {
		if out.ReplyTo == "" && out.TargetID == "" {
			return Outbound{}, errs.E(errs.Invalid, "target_sender is the author of the reply_to message or of the message reacted to: set reply_to or send a reaction")
		}
		if out.TargetSender, err = NormalizeRecipient("target_sender", req.TargetSender); err != nil {
			return Outbound{}, err
		}
	}
	return out, nil
}

// vcardName is the FN of a vCard, the contact's display name.
func vcardName(v string) string {
	for _, line := range strings.Split(v, "\n") {
		line = strings.TrimSpace(line)
		if name, ok := strings.CutPrefix(strings.ToUpper(line), "FN"); ok && (strings.HasPrefix(name, ":") || strings.HasPrefix(name, ";")) {
			if _, value, ok := strings.Cut(line, ":"); ok {
				return strings.TrimSpace(value)
			}
		}
	}
	return ""
}

func checkMediaURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errs.E(errs.Invalid, "media_url must be an http or https URL")
	}
	if u.User != nil {
		return errs.E(errs.Invalid, "media_url must not contain credentials")
	}
	return nil
}

func (m *Manager) mediaLimit(kind string) int64 {
	if kind == KindDocument {
		return m.opts.MaxDocumentBytes
	}
	return m.opts.MaxMediaBytes
}

// loadMedia fills out.Media from media_base64 or media_url, within the
// size limit of its type, and detects the MIME type when none was given.
func (m *Manager) loadMedia(ctx context.Context, req SendRequest, out *Outbound) error {
	limit := m.mediaLimit(out.Type)
	var data []byte
	var hint string
	var err error
	if req.MediaBase64 != "" {
		data, hint, err = DecodeBase64Media(req.MediaBase64)
	} else {
		data, hint, err = m.download(ctx, req.MediaURL, limit)
	}
	if err != nil {
		return err
	}
	if len(data) == 0 {
		return errs.E(errs.Invalid, "media is empty")
	}
	if int64(len(data)) > limit {
		return errs.E(errs.TooLarge, "%s media is %d bytes; the limit is %d", out.Type, len(data), limit)
	}
	out.Media = data
	if out.MimeType == "" {
		out.MimeType = detectMIME(out.Type, hint, data)
	}
	return nil
}

// DecodeBase64Media accepts plain base64 (standard or URL alphabet, padded
// or not) or a data: URL, whose type is returned as a hint.
func DecodeBase64Media(s string) ([]byte, string, error) {
	hint := ""
	if rest, ok := strings.CutPrefix(s, "data:"); ok {
		meta, payload, found := strings.Cut(rest, ",")
		if !found || !strings.HasSuffix(meta, ";base64") {
			return nil, "", errs.E(errs.Invalid, "media_base64 data URL must be base64-encoded")
		}
		hint, s = strings.TrimSuffix(meta, ";base64"), payload
	}
	s = strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == ' ' || r == '\t' {
			return -1
		}
		return r
	}, s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, hint, nil
		}
	}
	return nil, "", errs.E(errs.Invalid, "media_base64 is not valid base64")
}

// download fetches a media URL through the SSRF-guarded client, bounded by
// size and time.
func (m *Manager) download(ctx context.Context, raw string, limit int64) ([]byte, string, error) {
	ctx, cancel := context.WithTimeout(ctx, m.opts.MediaTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, raw, nil)
	if err != nil {
		return nil, "", errs.E(errs.Invalid, "media_url is not a valid URL")
	}
	req.Header.Set("User-Agent", "wagate")
	resp, err := m.http.Do(req)
	if err != nil {
		var blocked *ssrf.BlockedError
		switch {
		case errors.As(err, &blocked):
			return nil, "", errs.Wrap(errs.Invalid, err, "media_url is not allowed: "+blocked.Error())
		case errors.Is(err, context.DeadlineExceeded):
			return nil, "", errs.Wrap(errs.Invalid, err, fmt.Sprintf("media_url did not answer within %s", m.opts.MediaTimeout))
		}
		return nil, "", errs.Wrap(errs.Invalid, err, "could not download media_url")
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, "", errs.E(errs.Invalid, "media_url answered HTTP %d", resp.StatusCode)
	}
	if resp.ContentLength > limit {
		return nil, "", errs.E(errs.TooLarge, "media_url is %d bytes; the limit is %d", resp.ContentLength, limit)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, "", errs.Wrap(errs.Invalid, err, fmt.Sprintf("media_url did not finish within %s", m.opts.MediaTimeout))
		}
		return nil, "", errs.Wrap(errs.Invalid, err, "could not download media_url")
	}
	if int64(len(data)) > limit {
		return nil, "", errs.E(errs.TooLarge, "media_url is larger than the limit of %d bytes", limit)
	}
	return data, resp.Header.Get("Content-Type"), nil
}

// detectMIME prefers a specific type from the source (Content-Type, data
// URL) and sniffs the bytes otherwise.
func detectMIME(kind, hint string, data []byte) string {
	if mt, _, err := mime.ParseMediaType(hint); err == nil && mt != "application/octet-stream" && mt != "binary/octet-stream" {
		return hint
	}
	mt := http.DetectContentType(data)
	if kind == KindAudio && strings.HasPrefix(mt, "application/ogg") {
		return "audio/ogg; codecs=opus" // WhatsApp's voice-note format
	}
	return mt
}

// defaultMediaClient refuses every non-public destination.
func defaultMediaClient() *http.Client {
	return NewMediaClient(ssrf.New(nil))
}

// NewMediaClient returns the client for media_url downloads: every
// connection, redirects included, is checked by the guard at dial time.
func NewMediaClient(g *ssrf.Guard) *http.Client {
	return &http.Client{
		Transport: g.Transport(ssrf.TransportOptions{ResponseHeaderTimeout: 20 * time.Second}),
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 5 {
				return errors.New("too many redirects")
			}
			return nil
		},
	}
}
