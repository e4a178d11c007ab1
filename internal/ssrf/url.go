package ssrf

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
)

// Resolver resolves host names for CheckURL. *net.Resolver satisfies it;
// tests pass a stub so that no DNS query leaves the machine.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// URLError is returned by CheckURL for a webhook URL that may not be
// registered. Its message is meant for the API client (a 400 response).
type URLError struct {
	Reason string // what is wrong, e.g. "scheme must be http or https"
	Err    error  // underlying cause, for logs; ErrBlocked for refused addresses
}

// Error deliberately leaves out Err: resolver errors can name internal DNS
// servers, which an API client has no business seeing.
func (e *URLError) Error() string { return "invalid webhook URL: " + e.Reason }

// Unwrap exposes the cause, so errors.Is(err, ErrBlocked) works.
func (e *URLError) Unwrap() error { return e.Err }

// CheckURL validates a webhook URL at registration time: http or https
// only, a host, no credentials, a port in 1–65535, and a destination that
// is not blocked. An IP literal is judged directly; a name is resolved with
// r (net.DefaultResolver when r is nil) and refused only when every address
// is blocked, since the dial-time check refuses the blocked ones of a mixed
// answer anyway and DNS may legitimately change later.
func (g *Guard) CheckURL(ctx context.Context, raw string, r Resolver) error {
	u, err := url.Parse(raw)
	if err != nil {
		return &URLError{Reason: "URL does not parse", Err: err}
	}
	if u.Scheme != "http" && u.Scheme != "https" { // url.Parse lower-cases the scheme
		return &URLError{Reason: "scheme must be http or https"}
	}
	if u.User != nil {
		return &URLError{Reason: "URL must not contain credentials"}
	}
	host := u.Hostname()
	if u.Opaque != "" || host == "" {
		return &URLError{Reason: "host is required"}
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return &URLError{Reason: fmt.Sprintf("port %q is out of range 1-65535", p)}
		}
	}

	if ip, err := netip.ParseAddr(host); err == nil {
		if reason, blocked := g.Blocked(ip); blocked {
			return &URLError{Reason: fmt.Sprintf("host %s is blocked: %s", ip, reason), Err: ErrBlocked}
		}
		return nil
	}

	if r == nil {
		r = net.DefaultResolver
	}
	addrs, err := r.LookupNetIP(ctx, "ip", host)
	if err != nil || len(addrs) == 0 {
		return &URLError{Reason: "host does not resolve", Err: err}
	}
	firstReason, firstIP := "", netip.Addr{}
	for _, ip := range addrs {
		reason, blocked := g.Blocked(ip)
		if !blocked {
			return nil
		}
		if firstReason == "" {
			firstReason, firstIP = reason, ip
		}
	}
	return &URLError{
		Reason: fmt.Sprintf("host resolves only to blocked addresses (%s: %s)", firstIP, firstReason),
		Err:    ErrBlocked,
	}
}
