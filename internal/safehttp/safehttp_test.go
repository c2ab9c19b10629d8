package safehttp

import (
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"
	"testing"
)

func TestPublic(t *testing.T) {
	for addr, want := range map[string]bool{
		"8.8.8.8": true, "2606:4700::1111": true, "1.1.1.1": true,
		"127.0.0.1": false, "10.1.2.3": false, "172.16.0.1": false, "192.168.1.1": false,
		"169.254.169.254": false, "0.0.0.0": false, "100.64.0.1": false, "255.255.255.255": false,
		"::1": false, "::": false, "fe80::1": false, "fc00::1": false, "::ffff:127.0.0.1": false,
		"::ffff:10.0.0.1": false, "64:ff9b::a00:1": false, "ff02::1": false, "224.0.0.1": false,
	} {
		if got := Public(netip.MustParseAddr(addr)); got != want {
			t.Errorf("Public(%s) = %v, want %v", addr, got, want)
		}
	}
}

func TestClientRefusesLoopbackAlsoAfterRedirect(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "secret")
	}))
	defer srv.Close()

	_, err := NewClient(Options{}).Get(srv.URL)
	if !errors.Is(err, ErrRefused) {
		t.Fatalf("direct request to loopback: err = %v, want ErrRefused", err)
	}
	// A name that resolves to loopback is refused at dial time too.
	_, err = NewClient(Options{}).Get(strings.Replace(srv.URL, "127.0.0.1", "localhost", 1))
	if !errors.Is(err, ErrRefused) {
		t.Fatalf("request to localhost: err = %v, want ErrRefused", err)
	}

	resp, err := NewClient(Options{AllowPrivate: true}).Get(srv.URL)
	if err != nil {
		t.Fatalf("allowed request: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "secret" {
		t.Fatalf("body = %q", body)
	}
}

func TestCheckHost(t *testing.T) {
	if err := CheckHost(t.Context(), "127.0.0.1"); !errors.Is(err, ErrRefused) {
		t.Fatalf("CheckHost(127.0.0.1) = %v", err)
	}
	if err := CheckHost(t.Context(), "8.8.8.8"); err != nil {
		t.Fatalf("CheckHost(8.8.8.8) = %v", err)
	}
}

func TestRootCAs(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer srv.Close()
	if _, err := NewClient(Options{AllowPrivate: true}).Get(srv.URL); err == nil {
		t.Fatal("a server signed by an unknown authority was trusted")
	}
	file := t.TempDir() + "/ca.pem"
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(file, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	roots, err := RootCAs([]string{file})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := NewClient(Options{AllowPrivate: true, RootCAs: roots}).Get(srv.URL)
	if err != nil {
		t.Fatalf("with the CA file: %v", err)
	}
	resp.Body.Close()
	if _, err := RootCAs([]string{t.TempDir() + "/missing.pem"}); err == nil {
		t.Fatal("a missing CA file was accepted")
	}
	if roots, err := RootCAs(nil); roots != nil || err != nil {
		t.Fatalf("RootCAs(nil) = %v, %v; want the system's (nil)", roots, err)
	}
}
