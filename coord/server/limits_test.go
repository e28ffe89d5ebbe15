package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/internal/controlclient"
	"github.com/lanmesh/lanmesh/internal/key"
	"github.com/lanmesh/lanmesh/internal/wire"
)

func insecureClient() *http.Client {
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, Timeout: 10 * time.Second}
}

// S18: an anonymous flood of challenges from one address gets 429 with
// Retry-After, while a known node behind the same address still gets
// challenges (its own budget, named by the Lanmesh-Machine header) and
// its map stream; an unknown machine from there must wait.
func TestChallengeFloodSparesKnownNodes(t *testing.T) {
	tc, _ := startCoordLimits(t, t.TempDir(), "", &syncBuf{}, Limits{ChallengeRate: 0.01, ChallengeBurst: 2}, nil)
	a := tc.join("a", tc.newKey(true)) // one challenge of the burst
	hc := insecureClient()
	limited := false
	for i := 0; i < 10 && !limited; i++ {
		resp, err := hc.Get(tc.url + wire.PathChallenge)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusTooManyRequests {
			limited = true
			if ra := resp.Header.Get("Retry-After"); ra == "" || ra == "0" {
				t.Errorf("429 without a useful Retry-After: %q", ra)
			}
		}
	}
	if !limited {
		t.Fatal("10 challenges at 0.01/s burst 2 were all answered")
	}
	ms := a.openMap(wire.MapRequest{Hostname: "a"})
	ms.waitFor(t, "a's full map while its address is over budget", func(m *wire.MapMessage) bool { return m.Full })

	b := &testNode{t: t, mk: key.NewMachine(), nk: key.NewNode().Public()}
	b.c = tc.client(b.mk)
	_, err := b.c.Register(context.Background(), wire.RegisterRequest{AuthKey: tc.newKey(false).WithoutFingerprint(), NodeKey: b.nk, Hostname: "b"})
	var se *controlclient.StatusError
	if !errors.As(err, &se) || se.Code != http.StatusTooManyRequests {
		t.Fatalf("unknown machine on a spent address: %v, want 429", err)
	}
}

// signedPost sends one signed request for path with a fresh nonce and
// returns the raw envelope so the test can replay it.
func signedPost(t *testing.T, hc *http.Client, url string, mk key.MachinePrivate, path string, v any) (int, string, []byte) {
	t.Helper()
	resp, err := hc.Get(url + wire.PathChallenge)
	if err != nil {
		t.Fatal(err)
	}
	var ch wire.Challenge
	json.NewDecoder(resp.Body).Decode(&ch)
	resp.Body.Close()
	body, _ := json.Marshal(v)
	env, _ := json.Marshal(wire.Envelope{Version: wire.ProtocolVersion, Machine: mk.Public(), Nonce: ch.Nonce, Body: body, Sig: mk.Sign(wire.SignedBytes(path, ch.Nonce, body))})
	code, msg := postRaw(t, hc, url+path, env)
	return code, msg, env
}

func postRaw(t *testing.T, hc *http.Client, url string, env []byte) (int, string) {
	t.Helper()
	resp, err := hc.Post(url, "application/json", bytes.NewReader(env))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, string(b)
}

// S18: nonces are stateless, but single use: replaying a successful
// registration, or a known machine's request, fails.
func TestReplayRefused(t *testing.T) {
	tc := startCoord(t, t.TempDir(), "", &syncBuf{})
	hc := insecureClient()
	mk := key.NewMachine()
	reg := wire.RegisterRequest{AuthKey: tc.newKey(true).WithoutFingerprint(), NodeKey: key.NewNode().Public(), Hostname: "r"}
	code, msg, env := signedPost(t, hc, tc.url, mk, wire.PathRegister, reg)
	if code != 200 {
		t.Fatalf("register: %d %s", code, msg)
	}
	if code, msg := postRaw(t, hc, tc.url+wire.PathRegister, env); code != 401 || !strings.Contains(msg, "nonce already used") {
		t.Fatalf("replayed registration: %d %s", code, msg)
	}
	// A known machine's second registration, then its replay.
	code, msg, env = signedPost(t, hc, tc.url, mk, wire.PathRegister, reg)
	if code != 200 {
		t.Fatalf("re-register: %d %s", code, msg)
	}
	if code, msg := postRaw(t, hc, tc.url+wire.PathRegister, env); code != 401 || !strings.Contains(msg, "nonce already used") {
		t.Fatalf("replayed re-registration: %d %s", code, msg)
	}
}

// S18: a client that dribbles its body is cut off after BodyTimeout,
// while a netmap stream lives far past BodyTimeout and WriteTimeout.
func TestSlowBodyCutStreamsLive(t *testing.T) {
	lim := Limits{BodyTimeout: 300 * time.Millisecond, WriteTimeout: 300 * time.Millisecond}
	tc, _ := startCoordLimits(t, t.TempDir(), "", &syncBuf{}, lim, nil)
	a := tc.join("a", tc.newKey(true))
	ms := a.openMap(wire.MapRequest{Hostname: "a"})
	ms.waitFor(t, "full map", func(m *wire.MapMessage) bool { return m.Full })

	conn, err := tls.Dial("tcp", tc.addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n", wire.PathRegister)
	start := time.Now()
	cut := make(chan time.Duration, 1)
	go func() {
		io.Copy(io.Discard, conn) // ends when coord closes the connection
		cut <- time.Since(start)
	}()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var took time.Duration
	timeout := time.After(5 * time.Second)
wait:
	for {
		select {
		case took = <-cut:
			break wait
		case <-tick.C:
			conn.Write([]byte("{"))
		case <-timeout:
			t.Fatal("dribbling client still connected after 5 s (BodyTimeout 300 ms)")
		}
	}
	if took > 3*time.Second {
		t.Fatalf("dribbling client cut after %v", took)
	}
	// The stream outlived both timeouts several times over.
	time.Sleep(time.Second)
	select {
	case <-ms.done:
		t.Fatalf("map stream ended: %v", ms.err)
	default:
	}
	drain := time.After(time.Second)
	got := false
	for !got {
		select {
		case <-ms.msgs:
			got = true
		case <-drain:
			t.Fatal("no keep-alive on the map stream after the timeouts passed")
		}
	}
}

// S18: one source cannot hold more than MaxConnsPerSource connections;
// a freed slot is usable again.
func TestConnLimitPerSource(t *testing.T) {
	tc, _ := startCoordLimits(t, t.TempDir(), "", &syncBuf{}, Limits{MaxConnsPerSource: 3}, nil)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", tc.addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		return c
	}
	closed := func(c net.Conn) bool {
		c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		_, err := c.Read(make([]byte, 1))
		var ne net.Error
		return !(errors.As(err, &ne) && ne.Timeout())
	}
	for range 3 {
		dial()
	}
	if !closed(dial()) {
		t.Fatal("4th connection from one source kept open with MaxConnsPerSource 3")
	}
	if closed(conns[0]) {
		t.Fatal("a connection within the cap was closed")
	}
	conns[0].Close()
	time.Sleep(100 * time.Millisecond)
	if closed(dial()) {
		t.Fatal("freed slot not reusable")
	}
	// TLS clients are still served within the cap.
	conns[1].Close()
	time.Sleep(100 * time.Millisecond)
	resp, err := insecureClient().Get(tc.url + wire.PathHealth)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("health within the cap: %v %v", resp, err)
	}
	resp.Body.Close()
}

// S18: a node's third stream ends its oldest (MaxStreamsPerNode 2).
func TestStreamsPerNode(t *testing.T) {
	tc, _ := startCoordLimits(t, t.TempDir(), "", &syncBuf{}, Limits{MaxStreamsPerNode: 2}, nil)
	a := tc.join("a", tc.newKey(true))
	var ss []*mapStream
	for range 3 {
		ms := a.openMap(wire.MapRequest{Hostname: "a"})
		ms.waitFor(t, "full map", func(m *wire.MapMessage) bool { return m.Full })
		ss = append(ss, ms)
	}
	select {
	case <-ss[0].done:
	case <-time.After(5 * time.Second):
		t.Fatal("oldest stream still open past the per-node cap")
	}
	for _, ms := range ss[1:] {
		select {
		case <-ms.done:
			t.Fatalf("a newer stream ended: %v", ms.err)
		default:
		}
	}
}

// S18: the body deadline is lifted once a netmap stream's request is
// read, so an HTTP/1.1 stream (whose connection coord keeps reading to
// notice a hang-up) outlives it too.
func TestHTTP1StreamOutlivesBodyTimeout(t *testing.T) {
	tc, _ := startCoordLimits(t, t.TempDir(), "", &syncBuf{}, Limits{BodyTimeout: 300 * time.Millisecond}, nil)
	a := tc.join("a", tc.newKey(true))
	hc := &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
		TLSNextProto:    map[string]func(string, *tls.Conn) http.RoundTripper{}, // HTTP/1.1 only
	}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get(tc.url + wire.PathChallenge)
	if err != nil {
		t.Fatal(err)
	}
	var ch wire.Challenge
	json.NewDecoder(resp.Body).Decode(&ch)
	resp.Body.Close()
	body, _ := json.Marshal(wire.MapRequest{NodeKey: a.nk, Hostname: "a"})
	env, _ := json.Marshal(wire.Envelope{Version: wire.ProtocolVersion, Machine: a.mk.Public(), Nonce: ch.Nonce, Body: body, Sig: a.mk.Sign(wire.SignedBytes(wire.PathMap, ch.Nonce, body))})
	resp, err = hc.Post(tc.url+wire.PathMap, "application/json", bytes.NewReader(env))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ProtoMajor != 1 || resp.StatusCode != 200 {
		t.Fatalf("map over %s: %d", resp.Proto, resp.StatusCode)
	}
	lines := make(chan struct{}, 100)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, wire.MaxMapMessageBytes)
		for sc.Scan() {
			lines <- struct{}{}
		}
		close(lines)
	}()
	end := time.After(1500 * time.Millisecond)
	for {
		select {
		case _, ok := <-lines:
			if !ok {
				t.Fatal("HTTP/1.1 netmap stream ended within 1.5 s (BodyTimeout 300 ms)")
			}
		case <-end:
			return
		}
	}
}
