// Package ssrf keeps outbound webhook requests away from the gateway's own
// network: loopback, private, link-local, cloud metadata and other
// non-public addresses are refused unless the operator allows them
// explicitly (WAGATE_WEBHOOK_ALLOW_CIDRS).
//
// Two layers are provided. CheckURL validates a webhook URL when it is
// registered, so that obviously bad targets get a clear 400. The decisive
// check is at dial time (Control, Dialer, Transport): it judges the IP that
// the socket is about to connect to, after DNS resolution, so a host name
// that later re-resolves to an internal address (DNS rebinding) is still
// refused.
package ssrf

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"time"
)

// ErrBlocked is wrapped by every error this package returns for a refused
// destination, so callers can tell a policy refusal from a network failure
// with errors.Is(err, ssrf.ErrBlocked).
var ErrBlocked = errors.New("ssrf: destination address blocked")

// BlockedError reports a refused destination address and why.
type BlockedError struct {
	Addr   netip.Addr // the address that was refused; invalid if it could not be parsed
	Reason string     // short human phrase, e.g. "loopback address"
}

func (e *BlockedError) Error() string {
	if !e.Addr.IsValid() {
		return fmt.Sprintf("ssrf: destination blocked: %s", e.Reason)
	}
	return fmt.Sprintf("ssrf: destination %s blocked: %s", e.Addr, e.Reason)
}

// Unwrap lets errors.Is(err, ErrBlocked) match.
func (e *BlockedError) Unwrap() error { return ErrBlocked }

// Guard decides which destination addresses outbound webhook requests may
// reach. It is immutable after New and safe for concurrent use. The zero
// value (and a nil *Guard) has no allow list and so blocks every
// non-public address.
type Guard struct {
	allow []netip.Prefix
}

// New returns a Guard that lets addresses inside any of the allowed
// prefixes through even though they would otherwise be blocked.
// Prefixes are normalised (masked, zones dropped, IPv4-mapped IPv6 prefixes
// turned into IPv4 ones) so that they match the way addresses are judged.
func New(allow []netip.Prefix) *Guard {
	g := &Guard{}
	for _, p := range allow {
		if !p.IsValid() {
			continue
		}
		a := p.Addr().WithZone("")
		bits := p.Bits()
		// An IPv4-mapped prefix such as ::ffff:10.0.0.0/104 would never
		// match, because addresses are unmapped before they are judged.
		if a.Is4In6() && bits >= 96 {
			a, bits = a.Unmap(), bits-96
		}
		g.allow = append(g.allow, netip.PrefixFrom(a, bits).Masked())
	}
	return g
}

// ParseCIDRs parses the comma-separated form used by
// WAGATE_WEBHOOK_ALLOW_CIDRS. Spaces around entries and empty entries are
// ignored; a bare IP address means a single host (/32 or /128). Host bits
// are masked off, so "10.1.2.3/8" means 10.0.0.0/8.
func ParseCIDRs(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, entry := range strings.Split(s, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		if !strings.Contains(entry, "/") {
			a, err := netip.ParseAddr(entry)
			if err != nil || a.Zone() != "" {
				return nil, fmt.Errorf("ssrf: allow list entry %q is not a CIDR or IP address", entry)
			}
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(entry)
		if err != nil {
			return nil, fmt.Errorf("ssrf: allow list entry %q is not a valid CIDR: %v", entry, err)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// Blocked reports whether ip must not be connected to, and if so a short
// reason. Addresses inside an allowed prefix are never blocked.
//
// IPv4-mapped IPv6 addresses are judged as the IPv4 address they carry, as
// are the IPv4 addresses embedded in NAT64 (64:ff9b::/96), 6to4
// (2002::/16) and IPv4-compatible (::/96) addresses, since a connection to
// those can end up at the embedded IPv4 host.
func (g *Guard) Blocked(ip netip.Addr) (reason string, blocked bool) {
	if !ip.IsValid() {
		return "invalid address", true
	}
	// Zones only select an interface; they do not change which host is
	// reached, and netip.Prefix.Contains never matches a zoned address.
	ip = ip.WithZone("").Unmap()
	if g.allowed(ip) {
		return "", false
	}
	if ip.Is4() {
		return blockedV4(ip)
	}
	return g.blockedV6(ip)
}

func (g *Guard) allowed(ip netip.Addr) bool {
	if g == nil {
		return false
	}
	for _, p := range g.allow {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// blockedV4 judges a plain IPv4 address against the IANA special-purpose
// registry. Byte comparisons keep the table free of package-level state.
func blockedV4(ip netip.Addr) (string, bool) {
	b := ip.As4()
	switch {
	case ip == netip.IPv4Unspecified():
		return "unspecified address", true
	case b[0] == 0:
		return `"this network" address (0.0.0.0/8)`, true
	case b[0] == 127:
		return "loopback address", true
	case b[0] == 10,
		b[0] == 172 && b[1]&0xf0 == 16,
		b[0] == 192 && b[1] == 168:
		return "private address (RFC 1918)", true
	case b == [4]byte{169, 254, 169, 254}, // AWS, GCP, Azure, OpenStack, ...
		b == [4]byte{169, 254, 170, 2},   // AWS ECS task metadata
		b == [4]byte{100, 100, 100, 200}: // Alibaba Cloud
		return "cloud metadata address", true
	case b[0] == 100 && b[1]&0xc0 == 64:
		return "shared address space (CGNAT, RFC 6598)", true
	case b[0] == 169 && b[1] == 254:
		return "link-local address", true
	case b[0] == 192 && b[1] == 0 && b[2] == 0:
		return "reserved address (IETF protocol assignments)", true
	case b[0] == 192 && b[1] == 0 && b[2] == 2,
		b[0] == 198 && b[1] == 51 && b[2] == 100,
		b[0] == 203 && b[1] == 0 && b[2] == 113:
		return "documentation address", true
	case b[0] == 192 && b[1] == 88 && b[2] == 99:
		return "reserved address (6to4 relay anycast)", true
	case b[0] == 198 && b[1]&0xfe == 18:
		return "benchmarking address", true
	case b[0]&0xf0 == 224:
		return "multicast address", true
	case b == [4]byte{255, 255, 255, 255}:
		return "broadcast address", true
	case b[0]&0xf0 == 240:
		return "reserved address (240.0.0.0/4)", true
	}
	return "", false
}

func (g *Guard) blockedV6(ip netip.Addr) (string, bool) {
	b := ip.As16()
	switch {
	case ip == netip.IPv6Unspecified():
		return "unspecified address", true
	case ip == netip.IPv6Loopback():
		return "loopback address", true
	case b == [16]byte{0xfd, 0x00, 0x0e, 0xc2, 14: 0x02, 15: 0x54}: // fd00:ec2::254, AWS IPv6 metadata
		return "cloud metadata address", true
	case b[0] == 0xff:
		return "multicast address", true
	case b[0]&0xfe == 0xfc:
		return "private address (unique local, fc00::/7)", true
	case b[0] == 0xfe && b[1]&0xc0 == 0x80:
		return "link-local address", true
	case b[0] == 0xfe && b[1]&0xc0 == 0xc0:
		return "site-local address (deprecated)", true
	case hasPrefix(b, [16]byte{0x00, 0x64, 0xff, 0x9b}, 96): // NAT64 well-known prefix
		return g.embedded(b[12:16], "NAT64")
	case hasPrefix(b, [16]byte{0x00, 0x64, 0xff, 0x9b, 0x00, 0x01}, 48):
		// Local-use NAT64 prefixes may embed the IPv4 address at several
		// offsets, so the embedded host cannot be judged reliably.
		return "reserved address (local-use NAT64)", true
	case hasPrefix(b, [16]byte{}, 96):
		// IPv4-compatible (::a.b.c.d) is deprecated and not routable on the
		// Internet; report the embedded reason when there is one.
		if reason, blocked := g.embedded(b[12:16], "IPv4-compatible"); blocked {
			return reason, true
		}
		return "IPv4-compatible address (deprecated)", true
	case hasPrefix(b, [16]byte{0x01, 0x00}, 64):
		return "discard-only address", true
	case hasPrefix(b, [16]byte{0x20, 0x01}, 32):
		// Teredo obfuscates the client's IPv4 address and tunnels over
		// UDP to arbitrary relays: refuse it rather than decode it.
		return "Teredo address", true
	case hasPrefix(b, [16]byte{0x20, 0x01, 0x0d, 0xb8}, 32),
		hasPrefix(b, [16]byte{0x3f, 0xff}, 20):
		return "documentation address", true
	case hasPrefix(b, [16]byte{0x20, 0x01, 0x00, 0x02}, 48):
		return "benchmarking address", true
	case hasPrefix(b, [16]byte{0x20, 0x01}, 23):
		return "reserved address (IETF protocol assignments)", true
	case hasPrefix(b, [16]byte{0x20, 0x02}, 16): // 6to4
		return g.embedded(b[2:6], "6to4")
	case b[0]&0xe0 != 0x20:
		// Everything outside 2000::/3 not handled above is unassigned or
		// special-purpose; nothing a webhook should reach lives there.
		return "reserved address (outside 2000::/3)", true
	}
	return "", false
}

// embedded judges an IPv4 address carried inside an IPv6 one, honouring the
// allow list for the IPv4 address.
func (g *Guard) embedded(v4 []byte, kind string) (string, bool) {
	reason, blocked := g.Blocked(netip.AddrFrom4([4]byte(v4)))
	if !blocked {
		return "", false
	}
	return reason + " (embedded in " + kind + " address)", true
}

// hasPrefix reports whether the first bits bits of a equal those of p.
func hasPrefix(a, p [16]byte, bits int) bool {
	return netip.PrefixFrom(netip.AddrFrom16(p), bits).Contains(netip.AddrFrom16(a))
}

// Control is a net.Dialer Control function that refuses to connect to a
// blocked address. It sees the concrete IP the socket is about to connect
// to, after any DNS resolution, which is what defeats DNS rebinding. When a
// name resolves to several addresses the dialer skips the blocked ones and
// tries the rest.
func (g *Guard) Control(network, address string, _ syscall.RawConn) error {
	switch network {
	case "tcp4", "tcp6", "udp4", "udp6":
	default:
		// Fail closed: unix sockets and raw IP would sidestep the checks.
		return &BlockedError{Reason: "unsupported network " + network}
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return &BlockedError{Reason: fmt.Sprintf("unparsable address %q", address)}
	}
	if reason, blocked := g.Blocked(ap.Addr()); blocked {
		return &BlockedError{Addr: ap.Addr(), Reason: reason}
	}
	return nil
}

// Dialer returns a net.Dialer whose connections are checked by Control.
// A timeout of zero means no dial timeout beyond the context's.
func (g *Guard) Dialer(timeout time.Duration) *net.Dialer {
	return &net.Dialer{
		Timeout:   timeout,
		KeepAlive: 30 * time.Second,
		Control:   g.Control,
	}
}

// DialContext dials like net.Dialer.DialContext with a 10 s dial timeout,
// refusing blocked destinations with an error wrapping ErrBlocked.
func (g *Guard) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return g.Dialer(10*time.Second).DialContext(ctx, network, addr)
}

// TransportOptions sizes and times an http.Transport built by Transport.
// Zero values take the defaults noted on each field.
type TransportOptions struct {
	DialTimeout           time.Duration // default 10 s
	TLSHandshakeTimeout   time.Duration // default 10 s
	ResponseHeaderTimeout time.Duration // default none: rely on the request's context or client timeout
	IdleConnTimeout       time.Duration // default 90 s
	MaxIdleConns          int           // default 100
	MaxIdleConnsPerHost   int           // default 2 (net/http's default); set to the worker count
	MaxConnsPerHost       int           // default 0, unlimited
}

// Transport returns an *http.Transport whose every connection goes through
// the guarded dialer. Proxies are disabled on purpose: through a proxy the
// guard would only see the proxy's address, not the webhook's.
func (g *Guard) Transport(o TransportOptions) *http.Transport {
	if o.DialTimeout == 0 {
		o.DialTimeout = 10 * time.Second
	}
	if o.TLSHandshakeTimeout == 0 {
		o.TLSHandshakeTimeout = 10 * time.Second
	}
	if o.IdleConnTimeout == 0 {
		o.IdleConnTimeout = 90 * time.Second
	}
	if o.MaxIdleConns == 0 {
		o.MaxIdleConns = 100
	}
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           g.Dialer(o.DialTimeout).DialContext,
		ForceAttemptHTTP2:     true, // a custom DialContext otherwise turns HTTP/2 off
		TLSHandshakeTimeout:   o.TLSHandshakeTimeout,
		ResponseHeaderTimeout: o.ResponseHeaderTimeout,
		IdleConnTimeout:       o.IdleConnTimeout,
		MaxIdleConns:          o.MaxIdleConns,
		MaxIdleConnsPerHost:   o.MaxIdleConnsPerHost,
		MaxConnsPerHost:       o.MaxConnsPerHost,
		ExpectContinueTimeout: time.Second,
	}
}
