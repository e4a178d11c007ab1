package ssrf

// These tests never send traffic anywhere but loopback: address decisions
// are tested as pure functions, CheckURL uses a stub resolver, and only
// httptest servers on 127.0.0.1 / [::1] are dialled.

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestBlocked(t *testing.T) {
	g := New(nil)
	tests := []struct {
		ip      string
		blocked bool
		reason  string // substring of the reason; "" skips the check
	}{
		// IPv4 special-purpose ranges.
		{"0.0.0.0", true, "unspecified"},
		{"0.1.2.3", true, "this network"},
		{"127.0.0.1", true, "loopback"},
		{"127.255.255.254", true, "loopback"},
		{"10.0.0.1", true, "RFC 1918"},
		{"10.255.255.255", true, "RFC 1918"},
		{"172.16.0.1", true, "RFC 1918"},
		{"172.31.255.255", true, "RFC 1918"},
		{"172.15.255.255", false, ""},
		{"172.32.0.1", false, ""},
		{"192.168.1.1", true, "RFC 1918"},
		{"100.64.0.1", true, "CGNAT"},
		{"100.127.255.255", true, "CGNAT"},
		{"100.63.255.255", false, ""},
		{"100.128.0.0", false, ""},
		{"100.100.100.200", true, "metadata"},
		{"169.254.169.254", true, "cloud metadata address"},
		{"169.254.170.2", true, "metadata"},
		{"169.254.0.1", true, "link-local"},
		{"192.0.0.8", true, "IETF"},
		{"192.0.2.1", true, "documentation"},
		{"198.51.100.7", true, "documentation"},
		{"203.0.113.9", true, "documentation"},
		{"192.88.99.1", true, "6to4 relay"},
		{"198.18.0.1", true, "benchmarking"},
		{"198.19.255.255", true, "benchmarking"},
		{"198.20.0.1", false, ""},
		{"224.0.0.1", true, "multicast"},
		{"239.255.255.250", true, "multicast"},
		{"240.0.0.1", true, "reserved"},
		{"255.255.255.254", true, "reserved"},
		{"255.255.255.255", true, "broadcast"},
		// Public IPv4.
		{"93.184.216.34", false, ""},
		{"8.8.8.8", false, ""},
		{"1.1.1.1", false, ""},
		// IPv4-mapped IPv6 is judged as the IPv4 address.
		{"::ffff:127.0.0.1", true, "loopback"},
		{"::ffff:169.254.169.254", true, "metadata"},
		{"::ffff:10.1.2.3", true, "RFC 1918"},
		{"::ffff:93.184.216.34", false, ""},
		// IPv6 special-purpose ranges.
		{"::", true, "unspecified"},
		{"::1", true, "loopback"},
		{"fc00::1", true, "unique local"},
		{"fd12:3456::1", true, "unique local"},
		{"fd00:ec2::254", true, "metadata"},
		{"fe80::1", true, "link-local"},
		{"fe80::1%eth0", true, "link-local"},
		{"febf::1", true, "link-local"},
		{"fec0::1", true, "site-local"},
		{"ff02::1", true, "multicast"},
		{"ff0e::1", true, "multicast"},
		{"100::1", true, "discard"},
		{"2001:db8::1", true, "documentation"},
		{"3fff::1", true, "documentation"},
		{"2001:2::1", true, "benchmarking"},
		{"2001::1", true, "Teredo"},
		{"2001:0:4136:e378:8000:63bf:3fff:fdd2", true, "Teredo"},
		{"2001:10::1", true, "IETF"},
		{"4000::1", true, "outside 2000::/3"},
		{"::1:2:3:4", true, "outside 2000::/3"},
		// NAT64 well-known prefix: the embedded IPv4 decides.
		{"64:ff9b::a00:1", true, "RFC 1918"},
		{"64:ff9b::7f00:1", true, "loopback address (embedded in NAT64"},
		{"64:ff9b::a9fe:a9fe", true, "metadata"},
		{"64:ff9b::5db8:d822", false, ""}, // 93.184.216.34
		{"64:ff9b:1::a00:1", true, "local-use NAT64"},
		// 6to4: the IPv4 address in bits 16-47 decides.
		{"2002:7f00:1::1", true, "loopback address (embedded in 6to4"},
		{"2002:a9fe:a9fe::1", true, "metadata"},
		{"2002:c0a8:101::1", true, "RFC 1918"},
		{"2002:5db8:d822::1", false, ""},
		// IPv4-compatible (deprecated): always refused.
		{"::7f00:1", true, "loopback address (embedded in IPv4-compatible"},
		{"::a00:1", true, "RFC 1918"},
		{"::5db8:d822", true, "IPv4-compatible"},
		// Public IPv6.
		{"2606:2800::1", false, ""},
		{"2606:4700:4700::1111", false, ""},
		{"2a00:1450:4001::1", false, ""},
	}
	for _, tc := range tests {
		ip := netip.MustParseAddr(tc.ip)
		reason, blocked := g.Blocked(ip)
		if blocked != tc.blocked {
			t.Errorf("Blocked(%s) = %v (%q), want %v", tc.ip, blocked, reason, tc.blocked)
			continue
		}
		if !blocked && reason != "" {
			t.Errorf("Blocked(%s) not blocked but gave reason %q", tc.ip, reason)
		}
		if !strings.Contains(reason, tc.reason) {
			t.Errorf("Blocked(%s) reason = %q, want it to contain %q", tc.ip, reason, tc.reason)
		}
	}
}

func TestBlockedInvalidAndNilGuard(t *testing.T) {
	if _, blocked := New(nil).Blocked(netip.Addr{}); !blocked {
		t.Error("the zero netip.Addr must be blocked")
	}
	var nilGuard *Guard
	if _, blocked := nilGuard.Blocked(netip.MustParseAddr("127.0.0.1")); !blocked {
		t.Error("a nil Guard must block loopback")
	}
	var zero Guard
	if _, blocked := zero.Blocked(netip.MustParseAddr("93.184.216.34")); blocked {
		t.Error("the zero Guard must allow public addresses")
	}
}

func TestBlockedAllowList(t *testing.T) {
	allow, err := ParseCIDRs("127.0.0.0/8, 10.1.0.0/16, fd00::/8, 169.254.169.254")
	if err != nil {
		t.Fatal(err)
	}
	g := New(allow)
	tests := []struct {
		ip      string
		blocked bool
	}{
		{"127.0.0.1", false},
		{"::ffff:127.0.0.1", false},
		{"10.1.2.3", false},
		{"10.2.0.1", true},
		{"64:ff9b::a01:203", false}, // NAT64 of 10.1.2.3: the embedded address is allowed
		{"2002:a01:203::1", false},  // 6to4 of 10.1.2.3
		{"fd12::1", false},
		{"fc00::1", true},
		{"169.254.169.254", false},
		{"169.254.169.253", true},
		{"::1", true}, // 127.0.0.0/8 does not cover IPv6 loopback
		{"192.168.0.1", true},
	}
	for _, tc := range tests {
		reason, blocked := g.Blocked(netip.MustParseAddr(tc.ip))
		if blocked != tc.blocked {
			t.Errorf("Blocked(%s) = %v (%q), want %v", tc.ip, blocked, reason, tc.blocked)
		}
	}
}

func TestNewNormalisesPrefixes(t *testing.T) {
	g := New([]netip.Prefix{
		netip.MustParsePrefix("::ffff:10.0.0.0/104"), // IPv4-mapped form of 10.0.0.0/8
		netip.PrefixFrom(netip.MustParseAddr("192.168.1.77"), 24),
		{}, // invalid prefixes are ignored
	})
	for _, ip := range []string{"10.9.9.9", "::ffff:10.9.9.9", "192.168.1.1"} {
		if reason, blocked := g.Blocked(netip.MustParseAddr(ip)); blocked {
			t.Errorf("Blocked(%s) = %q, want allowed", ip, reason)
		}
	}
	if _, blocked := g.Blocked(netip.MustParseAddr("192.168.2.1")); !blocked {
		t.Error("192.168.2.1 must stay blocked")
	}
}

func TestParseCIDRs(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr string
	}{
		{in: "", want: nil},
		{in: " , ,", want: nil},
		{in: "10.0.0.0/8", want: []string{"10.0.0.0/8"}},
		{in: " 10.0.0.0/8 ,192.168.0.0/16,, fd00::/8 ", want: []string{"10.0.0.0/8", "192.168.0.0/16", "fd00::/8"}},
		{in: "10.1.2.3", want: []string{"10.1.2.3/32"}},
		{in: "::1", want: []string{"::1/128"}},
		{in: "10.1.2.3/8", want: []string{"10.0.0.0/8"}},
		{in: "10.0.0.0/8,nope", wantErr: `"nope"`},
		{in: "10.0.0.0/33", wantErr: `"10.0.0.0/33"`},
		{in: "300.1.1.1", wantErr: `"300.1.1.1"`},
		{in: "fe80::1%eth0", wantErr: `"fe80::1%eth0"`},
		{in: "example.com", wantErr: `"example.com"`},
	}
	for _, tc := range tests {
		got, err := ParseCIDRs(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseCIDRs(%q) error = %v, want one naming %s", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseCIDRs(%q): %v", tc.in, err)
			continue
		}
		var gotS []string
		for _, p := range got {
			gotS = append(gotS, p.String())
		}
		if strings.Join(gotS, " ") != strings.Join(tc.want, " ") {
			t.Errorf("ParseCIDRs(%q) = %v, want %v", tc.in, gotS, tc.want)
		}
	}
}

// stubResolver answers from a map and records every host it is asked
// about; unknown hosts get NXDOMAIN. It never touches the network.
type stubResolver struct {
	mu      sync.Mutex
	answers map[string][]string
	asked   []string
}

func (s *stubResolver) LookupNetIP(_ context.Context, network, host string) ([]netip.Addr, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.asked = append(s.asked, host)
	if network != "ip" {
		return nil, errors.New("stub: unexpected network " + network)
	}
	raw, ok := s.answers[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	var out []netip.Addr
	for _, a := range raw {
		out = append(out, netip.MustParseAddr(a))
	}
	return out, nil
}

func TestCheckURL(t *testing.T) {
	stub := &stubResolver{answers: map[string][]string{
		"public.test":     {"93.184.216.34", "2606:2800::1"},
		"internal.test":   {"10.0.0.5", "fd00::5"},
		"mixed.test":      {"127.0.0.1", "93.184.216.34"},
		"metadata.test":   {"169.254.169.254"},
		"empty.test":      {},
		"allowed.test":    {"10.1.0.9"},
		"localhost":       {"127.0.0.1", "::1"},
		"mapped.test":     {"::ffff:192.168.0.1"},
		"nat64-priv.test": {"64:ff9b::c0a8:1"},
	}}
	allow, _ := ParseCIDRs("10.1.0.0/16")
	g := New(allow)

	tests := []struct {
		url       string
		ok        bool
		reason    string // substring of the error message
		blocked   bool   // errors.Is(err, ErrBlocked)
		wantAsked string // host the resolver must have been asked about; "" = not consulted
	}{
		{url: "https://public.test/hook", ok: true, wantAsked: "public.test"},
		{url: "http://public.test:8080/hook?x=1#frag", ok: true, wantAsked: "public.test"},
		{url: "HTTPS://public.test/", ok: true, wantAsked: "public.test"},
		{url: "https://mixed.test/", ok: true, wantAsked: "mixed.test"},
		{url: "https://allowed.test/", ok: true, wantAsked: "allowed.test"},
		{url: "https://93.184.216.34/hook", ok: true},
		{url: "https://[2606:2800::1]:443/hook", ok: true},
		{url: "https://10.1.2.3/", ok: true}, // inside the allow list

		{url: "ftp://public.test/", reason: "scheme must be http or https"},
		{url: "file:///etc/passwd", reason: "scheme must be http or https"},
		{url: "gopher://public.test/", reason: "scheme must be http or https"},
		{url: "//public.test/", reason: "scheme must be http or https"},
		{url: "public.test/hook", reason: "scheme must be http or https"},
		{url: "https://user:pass@public.test/", reason: "credentials"},
		{url: "https://user@public.test/", reason: "credentials"},
		{url: "https:///path", reason: "host is required"},
		{url: "https:public.test", reason: "host is required"},
		{url: "https://:443/", reason: "host is required"},
		{url: "https://public.test:0/", reason: "out of range"},
		{url: "https://public.test:65536/", reason: "out of range"},
		{url: "https://public.test:99999999999999999999/", reason: "out of range"},
		{url: "https://public.test:abc/", reason: "does not parse"},
		{url: "ht tp://x", reason: "does not parse"},
		{url: "https://[::1/", reason: "does not parse"},

		{url: "http://127.0.0.1/", reason: "host 127.0.0.1 is blocked: loopback address", blocked: true},
		{url: "http://[::1]:8080/", reason: "loopback", blocked: true},
		{url: "http://169.254.169.254/latest/meta-data/", reason: "cloud metadata address", blocked: true},
		{url: "http://[::ffff:169.254.169.254]/", reason: "metadata", blocked: true},
		{url: "http://[::ffff:127.0.0.1]/", reason: "loopback", blocked: true},
		{url: "http://[fe80::1%25eth0]/", reason: "link-local", blocked: true},
		{url: "http://[64:ff9b::a00:1]/", reason: "RFC 1918", blocked: true},
		{url: "http://0.0.0.0:8080/", reason: "unspecified", blocked: true},
		{url: "http://192.168.1.1/", reason: "RFC 1918", blocked: true},

		{url: "https://internal.test/", reason: "resolves only to blocked addresses (10.0.0.5: private address (RFC 1918))", blocked: true, wantAsked: "internal.test"},
		{url: "https://metadata.test/", reason: "cloud metadata address", blocked: true, wantAsked: "metadata.test"},
		{url: "http://localhost:3000/", reason: "loopback", blocked: true, wantAsked: "localhost"},
		{url: "http://mapped.test/", reason: "RFC 1918", blocked: true, wantAsked: "mapped.test"},
		{url: "http://nat64-priv.test/", reason: "RFC 1918", blocked: true, wantAsked: "nat64-priv.test"},
		{url: "https://nxdomain.test/", reason: "host does not resolve", wantAsked: "nxdomain.test"},
		{url: "https://empty.test/", reason: "host does not resolve", wantAsked: "empty.test"},
	}
	for _, tc := range tests {
		stub.asked = nil
		err := g.CheckURL(context.Background(), tc.url, stub)
		if tc.ok {
			if err != nil {
				t.Errorf("CheckURL(%q) = %v, want nil", tc.url, err)
			}
		} else {
			var ue *URLError
			if !errors.As(err, &ue) {
				t.Errorf("CheckURL(%q) = %v (%T), want *URLError", tc.url, err, err)
				continue
			}
			if !strings.Contains(err.Error(), tc.reason) {
				t.Errorf("CheckURL(%q) = %q, want it to contain %q", tc.url, err, tc.reason)
			}
			if got := errors.Is(err, ErrBlocked); got != tc.blocked {
				t.Errorf("CheckURL(%q): errors.Is(err, ErrBlocked) = %v, want %v", tc.url, got, tc.blocked)
			}
		}
		wantAsked := []string(nil)
		if tc.wantAsked != "" {
			wantAsked = []string{tc.wantAsked}
		}
		if strings.Join(stub.asked, ",") != strings.Join(wantAsked, ",") {
			t.Errorf("CheckURL(%q) asked the resolver about %q, want %q", tc.url, stub.asked, wantAsked)
		}
	}
}

// Hosts that libc's inet_aton would read as 127.0.0.1 are not IP literals
// for netip, so they must go to the (stub) resolver, whose libc-like answer
// is then judged. Nothing here reaches the network.
func TestCheckURLNumericLookingHosts(t *testing.T) {
	hosts := []string{"0x7f.0.0.1", "2130706433", "127.1", "0177.0.0.1", "017700000001", "0x7f000001", "127.0.1"}
	stub := &stubResolver{answers: map[string][]string{}}
	for _, h := range hosts {
		stub.answers[h] = []string{"127.0.0.1"}
	}
	g := New(nil)
	for _, h := range hosts {
		stub.asked = nil
		err := g.CheckURL(context.Background(), "http://"+h+"/hook", stub)
		if !errors.Is(err, ErrBlocked) || !strings.Contains(err.Error(), "loopback") {
			t.Errorf("CheckURL(http://%s/) = %v, want a loopback refusal", h, err)
		}
		if len(stub.asked) != 1 || stub.asked[0] != h {
			t.Errorf("CheckURL(http://%s/) consulted the resolver with %q, want exactly [%q]", h, stub.asked, h)
		}
	}
}

func TestControl(t *testing.T) {
	g := New(nil)
	tests := []struct {
		network, addr string
		blocked       bool
	}{
		{"tcp4", "127.0.0.1:80", true},
		{"tcp6", "[::1]:443", true},
		{"tcp6", "[::ffff:10.0.0.1]:443", true},
		{"tcp6", "[fe80::1%eth0]:80", true},
		{"tcp4", "169.254.169.254:80", true},
		{"udp4", "10.0.0.1:53", true},
		{"tcp4", "93.184.216.34:443", false},
		{"tcp6", "[2606:2800::1]:443", false},
		{"unix", "/run/docker.sock", true},
		{"ip4", "93.184.216.34", true},
		{"tcp4", "not-an-address", true},
	}
	for _, tc := range tests {
		// Control is called directly: deciding does not need a socket.
		err := g.Control(tc.network, tc.addr, nil)
		if got := err != nil; got != tc.blocked {
			t.Errorf("Control(%s, %s) = %v, want blocked=%v", tc.network, tc.addr, err, tc.blocked)
		}
		if err != nil && !errors.Is(err, ErrBlocked) {
			t.Errorf("Control(%s, %s) error %v does not wrap ErrBlocked", tc.network, tc.addr, err)
		}
	}
	err := g.Control("tcp4", "169.254.169.254:80", nil)
	var be *BlockedError
	if !errors.As(err, &be) || be.Addr != netip.MustParseAddr("169.254.169.254") ||
		!strings.Contains(err.Error(), "169.254.169.254") || !strings.Contains(err.Error(), "cloud metadata address") {
		t.Errorf("Control error %v should name the address and the reason", err)
	}
}

// serve starts an httptest server on the given loopback listener and
// counts the requests it answers.
func serve(t *testing.T, ln net.Listener) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	hits := new(atomic.Int64)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		io.WriteString(w, "ok")
	}))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, hits
}

func checkDial(t *testing.T, ln net.Listener, allowCIDR string) {
	srv, hits := serve(t, ln)

	blockedClient := &http.Client{Transport: New(nil).Transport(TransportOptions{}), Timeout: 5 * time.Second}
	resp, err := blockedClient.Get(srv.URL)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("GET %s through a guard without allow list succeeded", srv.URL)
	}
	if !errors.Is(err, ErrBlocked) || !strings.Contains(err.Error(), "loopback address") {
		t.Fatalf("GET %s: error %v, want one wrapping ErrBlocked naming loopback", srv.URL, err)
	}
	if hits.Load() != 0 {
		t.Fatalf("server saw %d requests despite the block", hits.Load())
	}

	// DialContext refuses too, and names the address.
	host := strings.TrimPrefix(srv.URL, "http://")
	if c, err := New(nil).DialContext(context.Background(), "tcp", host); err == nil {
		c.Close()
		t.Fatalf("DialContext(%s) succeeded", host)
	} else if !errors.Is(err, ErrBlocked) {
		t.Fatalf("DialContext(%s) = %v, want ErrBlocked", host, err)
	}

	allow, err := ParseCIDRs(allowCIDR)
	if err != nil {
		t.Fatal(err)
	}
	okClient := &http.Client{Transport: New(allow).Transport(TransportOptions{}), Timeout: 5 * time.Second}
	resp, err = okClient.Get(srv.URL)
	if err != nil {
		t.Fatalf("GET %s with %s allowed: %v", srv.URL, allowCIDR, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "ok" || hits.Load() != 1 {
		t.Fatalf("GET %s with %s allowed: status %d body %q hits %d", srv.URL, allowCIDR, resp.StatusCode, body, hits.Load())
	}
}

func TestDialTimeBlockIPv4Loopback(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	checkDial(t, ln, "127.0.0.0/8")
}

func TestDialTimeBlockIPv6Loopback(t *testing.T) {
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Skipf("skipping: this machine has no IPv6 loopback (listen on [::1]: %v)", err)
	}
	checkDial(t, ln, "::1/128")
}

// A guard that allows 127.0.0.0/8 but not ::1 must still refuse the IPv6
// loopback: the allow list is per family.
func TestDialTimeAllowListIsPerFamily(t *testing.T) {
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Skipf("skipping: this machine has no IPv6 loopback (listen on [::1]: %v)", err)
	}
	srv, hits := serve(t, ln)
	allow, _ := ParseCIDRs("127.0.0.0/8")
	c := &http.Client{Transport: New(allow).Transport(TransportOptions{}), Timeout: 5 * time.Second}
	resp, err := c.Get(srv.URL)
	if err == nil {
		resp.Body.Close()
		t.Fatal("GET [::1] succeeded with only 127.0.0.0/8 allowed")
	}
	if !errors.Is(err, ErrBlocked) || hits.Load() != 0 {
		t.Fatalf("err %v hits %d, want ErrBlocked and no hit", err, hits.Load())
	}
}

func TestTransportOptions(t *testing.T) {
	tr := New(nil).Transport(TransportOptions{MaxIdleConnsPerHost: 16, MaxConnsPerHost: 32, ResponseHeaderTimeout: 15 * time.Second})
	if tr.Proxy != nil {
		t.Error("Proxy must be nil: a proxy would hide the real destination from the guard")
	}
	if tr.DialContext == nil {
		t.Error("DialContext must be the guarded dialer")
	}
	if tr.MaxIdleConnsPerHost != 16 || tr.MaxConnsPerHost != 32 || tr.ResponseHeaderTimeout != 15*time.Second {
		t.Errorf("options not applied: %d %d %v", tr.MaxIdleConnsPerHost, tr.MaxConnsPerHost, tr.ResponseHeaderTimeout)
	}
	if tr.TLSHandshakeTimeout == 0 || tr.IdleConnTimeout == 0 || tr.MaxIdleConns == 0 {
		t.Error("defaults not applied")
	}
	d := New(nil).Dialer(3 * time.Second)
	if d.Timeout != 3*time.Second || d.Control == nil {
		t.Error("Dialer must carry the timeout and the Control hook")
	}
}
