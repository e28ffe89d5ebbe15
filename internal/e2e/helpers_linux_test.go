package e2e

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/internal/testbed"
	"github.com/lanmesh/lanmesh/internal/wire"
)

// mesh builds the standard world and brings up coord and both routers.
func mesh(t *testing.T, opts testbed.StandardOptions) *testbed.Mesh {
	t.Helper()
	return meshWith(t, opts, testbed.MeshOptions{})
}

// meshWith is mesh with debug logging and the like.
func meshWith(t *testing.T, opts testbed.StandardOptions, mo testbed.MeshOptions) *testbed.Mesh {
	t.Helper()
	testbed.SkipUnlessRoot(t)
	if _, err := testbed.FindBinaries(); err != nil {
		t.Fatalf("binaries: %v", err)
	}
	s := testbed.NewStandard(t, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	m, err := testbed.StartMeshWith(ctx, s, t.Logf, mo)
	if err != nil {
		t.Fatalf("mesh: %v (logs in %s)", err, s.LogDir)
	}
	return m
}

// waitPing pings until one reply arrives or limit passes.
func waitPing(t *testing.T, from *testbed.Host, dst string, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < limit {
		if n, _ := from.Ping(context.Background(), dst, 1, 500*time.Millisecond); n == 1 {
			return time.Since(start)
		}
	}
	t.Fatalf("%s -> %s: no ping reply within %v", from.Name, dst, limit)
	return 0
}

// transfer sends size random bytes over TCP from -> to (listening on
// listen) and checks the receiver's SHA-256 against the sender's.
func transfer(t *testing.T, from, to *testbed.Host, listen string, size int64) time.Duration {
	t.Helper()
	l, err := to.Listen("tcp4", listen)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	type result struct {
		sum [32]byte
		n   int64
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(60 * time.Second))
		h := sha256.New()
		n, err := io.Copy(h, c)
		var r result
		copy(r.sum[:], h.Sum(nil))
		r.n, r.err = n, err
		done <- r
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := from.DialContext(ctx, "tcp4", listen)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", listen, from.Name, err)
	}
	start := time.Now()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(c, h), io.LimitReader(rand.Reader, size)); err != nil {
		t.Fatalf("send: %v", err)
	}
	c.(*net.TCPConn).CloseWrite()
	r := <-done
	c.Close()
	took := time.Since(start)
	if r.err != nil || r.n != size {
		t.Fatalf("receive: %d of %d bytes, %v", r.n, size, r.err)
	}
	if want := h.Sum(nil); string(want) != string(r.sum[:]) {
		t.Fatalf("SHA-256 mismatch: sent %x, received %x", want, r.sum)
	}
	return took
}

// stream is a long-lived TCP flow from -> to that writes a little every
// few milliseconds; Received shows whether it is still flowing.
type stream struct {
	received atomic.Int64
	stop     chan struct{}
	wg       sync.WaitGroup
	conn     net.Conn
	l        net.Listener
	accepted chan net.Conn // the receiving side, closed by close so a broken path cannot hang it
	mu       sync.Mutex
	err      error
}

func startStream(t *testing.T, from, to *testbed.Host, listen string) *stream {
	t.Helper()
	s := &stream{stop: make(chan struct{}), accepted: make(chan net.Conn, 1)}
	var err error
	if s.l, err = to.Listen("tcp4", listen); err != nil {
		t.Fatal(err)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		c, err := s.l.Accept()
		if err != nil {
			return
		}
		s.accepted <- c
		defer c.Close()
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			s.received.Add(int64(n))
			if err != nil {
				return
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if s.conn, err = from.DialContext(ctx, "tcp4", listen); err != nil {
		t.Fatalf("stream dial: %v", err)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		chunk := make([]byte, 1024)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-tick.C:
				s.conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
				if _, err := s.conn.Write(chunk); err != nil {
					s.mu.Lock()
					s.err = err
					s.mu.Unlock()
					return
				}
			}
		}
	}()
	t.Cleanup(s.close)
	return s
}

func (s *stream) close() {
	select {
	case <-s.stop:
		return
	default:
	}
	close(s.stop)
	s.conn.Close()
	s.l.Close()
	select {
	case c := <-s.accepted:
		c.Close()
	default:
	}
	s.wg.Wait()
}

// flowing asserts the stream delivers bytes during d.
func (s *stream) flowing(t *testing.T, what string, d time.Duration) {
	t.Helper()
	before := s.received.Load()
	time.Sleep(d)
	after := s.received.Load()
	s.mu.Lock()
	err := s.err
	s.mu.Unlock()
	if after <= before || err != nil {
		t.Fatalf("%s: TCP stream a1 -> b1 stalled (%d -> %d bytes, write error %v)", what, before, after, err)
	}
	t.Logf("%s: stream delivered %d bytes in %v", what, after-before, d)
}

// resumes waits until the stream delivers new bytes (TCP may be in
// retransmission backoff after an outage, so this can take seconds).
func (s *stream) resumes(t *testing.T, what string, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	before := s.received.Load()
	for time.Since(start) < limit {
		if s.received.Load() > before {
			return time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.mu.Lock()
	err := s.err
	s.mu.Unlock()
	t.Fatalf("%s: TCP stream a1 -> b1 did not resume within %v (write error %v)", what, limit, err)
	return 0
}

// secretsOf returns every secret of the run that must never reach a log
// (S11): the auth key secrets and each agent's node private key in its
// base64 and hex (UAPI) forms.
func secretsOf(t *testing.T, m *testbed.Mesh, extraKeys ...string) []string {
	t.Helper()
	var out []string
	for _, k := range append(mapValues(m.Keys), extraKeys...) {
		pk, err := wire.ParseAuthKey(k)
		if err != nil {
			t.Fatalf("auth key from coord does not parse: %v", err)
		}
		out = append(out, pk.Secret)
	}
	for _, a := range m.Agents() {
		st, err := a.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		b64, hexForm, err := a.PrivateKey(st.Self.Key)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b64, hexForm)
		// The machine key signs every control request: just as secret.
		var state struct {
			MachineKey string `json:"machine_key"`
		}
		if b, err := os.ReadFile(filepath.Join(a.StateDir, "state.json")); err == nil && json.Unmarshal(b, &state) == nil && len(state.MachineKey) >= 32 {
			out = append(out, state.MachineKey)
		}
	}
	return out
}

func mapValues(m map[string]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// noSecretsInLogs is the S11 check over every captured log of the world
// (process logs and every CLI invocation's output; state dirs excluded),
// with testbed.ScanLogs: each secret as is, URL-escaped, and raw keys in
// both base64 and hex.
func noSecretsInLogs(t *testing.T, w *testbed.World, secrets []string) {
	t.Helper()
	if len(secrets) == 0 {
		t.Fatal("no secrets to look for: the check would prove nothing")
	}
	named := make([]testbed.Secret, len(secrets))
	for i, v := range secrets {
		named[i] = testbed.Secret{Name: fmt.Sprintf("secret %d of %d (%d chars)", i+1, len(secrets), len(v)), Value: v}
	}
	hits, err := testbed.ScanLogs(named, []string{w.LogDir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hits {
		t.Errorf("S11: secret in log: %s", h)
	}
}

func peerIs(name string, present bool) func(*testbed.Status) bool {
	return func(s *testbed.Status) bool { return (s.Peer(name) != nil) == present }
}

func fmtMs(d time.Duration) string { return fmt.Sprintf("%d ms", d.Milliseconds()) }
