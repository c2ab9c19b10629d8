// Package safehttp builds HTTP clients for requests to addresses that outside data chose (push
// gateways, URL previews, federation): they refuse private, loopback and link-local addresses
// unless told otherwise. The check runs on the address actually dialled, so redirects and DNS
// answers that change between lookups (rebinding) cannot reach a refused address.
package safehttp

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"syscall"
	"time"
)

// ErrRefused is returned (wrapped) when a request would connect to a refused address.
var ErrRefused = errors.New("address refused")

// Options configures a client.
type Options struct {
	// AllowPrivate lets the client reach private, loopback and link-local addresses.
	AllowPrivate bool
	// Timeout bounds each whole request, body included; 0 means 30 s.
	Timeout time.Duration
	// MaxRedirects bounds the redirects followed; 0 means 5, negative follows none.
	MaxRedirects int
	// RootCAs are the certificate authorities trusted for HTTPS; nil means the system's.
	RootCAs *x509.CertPool
}

// NewClient returns an HTTP client that enforces o.
func NewClient(o Options) *http.Client {
	if o.Timeout == 0 {
		o.Timeout = 30 * time.Second
	}
	if o.MaxRedirects == 0 {
		o.MaxRedirects = 5
	}
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	if !o.AllowPrivate {
		dialer.Control = refusePrivate
	}
	transport := &http.Transport{
		Proxy:                 nil, // a proxy would hide the dialled address from the check
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   10,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		TLSClientConfig:       &tls.Config{RootCAs: o.RootCAs, MinVersion: tls.VersionTLS12},
		ResponseHeaderTimeout: o.Timeout,
	}
	return &http.Client{
		Transport: transport,
		Timeout:   o.Timeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if o.MaxRedirects < 0 || len(via) > o.MaxRedirects {
				return http.ErrUseLastResponse
			}
			if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
				return fmt.Errorf("redirect to %s: %w", req.URL.Scheme, ErrRefused)
			}
			return nil
		},
	}
}

// refusePrivate is a net.Dialer Control hook: it sees the resolved address about to be dialled.
func refusePrivate(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("dial %s: %w", address, ErrRefused)
	}
	if !Public(ap.Addr()) {
		return fmt.Errorf("dial %s: %w: not a public address", address, ErrRefused)
	}
	return nil
}

// blocked are special-purpose ranges beyond what netip classifies (RFC 6890 and successors).
var blocked = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),   // carrier-grade NAT
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // documentation
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // documentation
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, broadcast
	netip.MustParsePrefix("64:ff9b::/96"),    // NAT64 can reach any IPv4 address
	netip.MustParsePrefix("64:ff9b:1::/48"),  // local-use NAT64
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("2002::/16"),       // 6to4 embeds IPv4 addresses
	netip.MustParsePrefix("100::/64"),        // discard-only
}

// Public reports whether a is a globally reachable unicast address: not loopback, private,
// link-local, multicast, unspecified or another special-purpose range.
func Public(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsValid() || a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsInterfaceLocalMulticast() || a.IsMulticast() || a.IsUnspecified() {
		return false
	}
	for _, p := range blocked {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

// RootCAs returns the system's trusted certificate authorities with the PEM certificates of
// files added (outbound.ca_files), or nil (the system's alone) when files is empty.
func RootCAs(files []string) (*x509.CertPool, error) {
	if len(files) == 0 {
		return nil, nil
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	for _, f := range files {
		pem, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("read CA file: %w", err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s holds no PEM certificate", f)
		}
	}
	return pool, nil
}

// CheckHost resolves host and reports ErrRefused when any of its addresses is not public. It is
// an early, friendlier answer for a request's own host; the dial-time check is what enforces.
func CheckHost(ctx context.Context, host string) error {
	if a, err := netip.ParseAddr(host); err == nil {
		if !Public(a) {
			return fmt.Errorf("%s: %w: not a public address", host, ErrRefused)
		}
		return nil
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return fmt.Errorf("resolve %s: %w", host, err)
	}
	for _, a := range addrs {
		if !Public(a) {
			return fmt.Errorf("%s resolves to %s: %w: not a public address", host, a, ErrRefused)
		}
	}
	return nil
}
