package sessions

import (
	"bytes"
	"context"
	"net/http"
	"slices"

	"github.com/wagate/wagate/internal/errs"
	"github.com/wagate/wagate/internal/events"
)

// MediaFile is the file of an inbound media message.
type MediaFile struct {
	Data     []byte
	MimeType string
	FileName string // "" when the sender gave none (only documents have one)
}

// sealMedia readies the media references of inbound events for storage:
// each is named by its message id, and its Ref is tagged with the engine
// that made it (a session may change engines; another engine cannot read
// it) and sealed. evs is copied only when an event carries media, so the
// engine's events are never modified and batches without media cost one
// pass of nil checks.
func (m *Manager) sealMedia(engine string, evs []events.Inbound) ([]events.Inbound, error) {
	var out []events.Inbound
	for i := range evs {
		if evs[i].Media == nil {
			continue
		}
		if out == nil {
			out = slices.Clone(evs)
		}
		if evs[i].MessageID == "" || len(evs[i].Media.Ref) == 0 {
			out[i].Media = nil // nothing could ever name or fetch it
			continue
		}
		ref := *evs[i].Media
		ref.MessageID = evs[i].MessageID
		ref.Ref = append(append([]byte(engine), 0), ref.Ref...)
		if m.opts.Sealer != nil {
			sealed, err := m.opts.Sealer.Seal(ref.Ref)
			if err != nil {
				return nil, errs.Wrap(errs.Internal, err, "sealing a media reference")
			}
			ref.Ref = sealed
		}
		out[i].Media = &ref
	}
	if out == nil {
		return evs, nil
	}
	return out, nil
}

// Media returns the file of an inbound media message (image, video, audio,
// document or sticker) of one of a client's sessions. The session must be
// connected on this node: WhatsApp serves files to linked devices only.
func (m *Manager) Media(ctx context.Context, clientID int64, sessionID, messageID string) (MediaFile, error) {
	s, err := m.owned(ctx, clientID, sessionID)
	if err != nil {
		return MediaFile{}, err
	}
	if !ValidMessageID(messageID) {
		return MediaFile{}, errs.E(errs.NotFound, "media not found")
	}
	ref, err := m.store.MediaRef(ctx, s.ID, messageID)
	if errs.Is(err, errs.NotFound) {
		return MediaFile{}, errs.E(errs.NotFound, "no media for message %s in this session: it is not an inbound media message, or it is older than the retention period", messageID)
	}
	if err != nil {
		return MediaFile{}, err
	}
	limit := m.opts.MaxDownloadBytes
	if ref.Size > limit {
		return MediaFile{}, errs.E(errs.TooLarge, "the file is %d bytes; this server returns files of up to %d bytes", ref.Size, limit)
	}
	l, err := m.connected(s)
	if err != nil {
		return MediaFile{}, err
	}
	raw := ref.Ref
	if m.opts.Sealer != nil {
		if raw, err = m.opts.Sealer.Open(ref.Ref); err != nil {
			return MediaFile{}, errs.Wrap(errs.Internal, err, "opening a media reference (was WAGATE_SECRET_KEY changed?)")
		}
	}
	engine, raw, ok := bytes.Cut(raw, []byte{0})
	if !ok {
		return MediaFile{}, errs.E(errs.Internal, "malformed media reference") // never print it: it holds keys
	}
	if string(engine) != s.Engine {
		return MediaFile{}, errs.E(errs.NotFound, "the file of message %s was received by the session's previous engine and cannot be fetched", messageID)
	}

	select {
	case m.downloads <- struct{}{}:
		defer func() { <-m.downloads }()
	case <-ctx.Done():
		return MediaFile{}, errs.Wrap(errs.Unavailable, ctx.Err(), "waiting for a media download slot")
	}
	dctx, cancel := context.WithTimeout(ctx, m.opts.DownloadTimeout)
	defer cancel()
	data, mimeType, err := l.conn.Download(dctx, raw, limit)
	if err != nil {
		if c := errs.CodeOf(err); c != CodeMediaExpired && c != errs.NotFound {
			m.log.Warn("media download failed", "session_id", s.ID, "message_id", messageID, "err", err)
		}
		return MediaFile{}, err
	}
	if int64(len(data)) > limit {
		return MediaFile{}, errs.E(errs.TooLarge, "the file is larger than this server's limit of %d bytes", limit)
	}
	// The type stored with the event is what the webhook announced; the
	// engine's and the bytes' are fallbacks.
	mt := ref.MimeType
	if mt == "" {
		mt = mimeType
	}
	if mt == "" {
		mt = http.DetectContentType(data)
	}
	return MediaFile{Data: data, MimeType: mt, FileName: ref.FileName}, nil
}
