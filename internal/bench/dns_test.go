package bench

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/lanmesh/lanmesh/internal/testenv"
)

func TestCheckA(t *testing.T) {
	want := netip.MustParseAddr("198.19.1.10")
	a := func(ip string) mdns.RR {
		return &mdns.A{Hdr: mdns.RR_Header{Name: "x.", Rrtype: mdns.TypeA, Class: mdns.ClassINET}, A: net.ParseIP(ip)}
	}
	for _, tt := range []struct {
		name    string
		msg     *mdns.Msg
		wantErr string
	}{
		{"match", &mdns.Msg{Answer: []mdns.RR{a("198.19.1.10")}}, ""},
		{"wrong address", &mdns.Msg{Answer: []mdns.RR{a("198.19.1.11")}}, "want 198.19.1.10"},
		{"nxdomain", &mdns.Msg{MsgHdr: mdns.MsgHdr{Rcode: mdns.RcodeNameError}}, "NXDOMAIN"},
		{"empty", &mdns.Msg{}, "no A record"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := checkA(tt.msg, want)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("checkA = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// The load generator counts only correct answers: against the real
// agent server it measures, and a wrong expected address fails the run.
func TestLoadDNSAgainstAgent(t *testing.T) {
	s, addr, err := serveAgentDNS()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	qps, lost, err := loadDNS(ctx, addr, dnsMeshName, dnsMeshAddr, 2, 200*time.Millisecond)
	if err != nil || qps <= 0 {
		t.Fatalf("loadDNS = %v qps, %d lost, %v", qps, lost, err)
	}
	if _, _, err := loadDNS(ctx, addr, dnsMeshName, netip.MustParseAddr("100.64.0.9"), 2, 200*time.Millisecond); err == nil {
		t.Fatal("loadDNS accepted a wrong answer")
	}
	if _, _, err := loadDNS(ctx, addr, "nobody."+dnsMeshDomain+".", dnsMeshAddr, 1, 200*time.Millisecond); err == nil {
		t.Fatal("loadDNS accepted NXDOMAIN")
	}
}

func TestServeDNSChild(t *testing.T) {
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- serveDNSChild(inR, outW); outW.Close() }()
	line := make([]byte, 64)
	n, err := outR.Read(line)
	if err != nil {
		t.Fatal(err)
	}
	addr, err := netip.ParseAddrPort(strings.TrimSpace(string(line[:n])))
	if err != nil {
		t.Fatal(err)
	}
	if err := waitDNS(context.Background(), addr, dnsMeshName, dnsMeshAddr, nil); err != nil {
		t.Fatalf("child server: %v", err)
	}
	inW.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("child server did not stop when stdin closed")
	}
}

// RunDNS end to end with a real dnsmasq on loopback (the agent in this
// process; lanmesh-bench gives it a process of its own).
func TestRunDNS(t *testing.T) {
	testenv.RequireTool(t, "dnsmasq", "dnsmasq-base")
	res, err := RunDNS(context.Background(), DNSOptions{Reps: 2, Duration: 200 * time.Millisecond, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	if f := res.Failed(); len(f) > 0 {
		t.Fatalf("failed: %v", f)
	}
	for _, s := range res.Servers {
		if len(s.QPS) != 2 || s.QPS.Min() <= 0 {
			t.Fatalf("%s: qps %v", s.Server, s.QPS)
		}
	}
	var b bytes.Buffer
	if err := WriteDNSReport(&b, res); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"# DNS", "| lanmesh agent |", "| dnsmasq |", "Dnsmasq version", "1.00x"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("dns.md lacks %q:\n%s", want, b.String())
		}
	}
}

func TestDNSReportShowsFailures(t *testing.T) {
	r := &DNSResult{Env: CurrentEnv(), Reps: 2, Duration: time.Second, Workers: 4, Servers: []DNSServerResult{
		{Server: "lanmesh agent", QPS: Sample{100, 200}},
		{Server: "dnsmasq", Errs: []string{"rep 1: no answers"}},
	}}
	if f := r.Failed(); len(f) != 1 || !strings.Contains(f[0], "dnsmasq") {
		t.Fatalf("Failed = %v", f)
	}
	var b bytes.Buffer
	if err := WriteDNSReport(&b, r); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "dnsmasq failed: rep 1") || !strings.Contains(b.String(), "| 150 |") {
		t.Fatalf("report:\n%s", b.String())
	}
}
