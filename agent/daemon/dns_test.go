package daemon

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/agent/config"
	"github.com/lanmesh/lanmesh/internal/wire"
	mdns "github.com/miekg/dns"
)

func query(t *testing.T, server, name string) (*mdns.Msg, error) {
	t.Helper()
	m := new(mdns.Msg)
	m.SetQuestion(mdns.Fqdn(name), mdns.TypeA)
	c := &mdns.Client{Timeout: 2 * time.Second}
	r, _, err := c.Exchange(m, server)
	return r, err
}

func answerA(r *mdns.Msg) []string {
	var out []string
	for _, rr := range r.Answer {
		if a, ok := rr.(*mdns.A); ok {
			out = append(out, a.A.String())
		}
	}
	return out
}

// The daemon serves mesh names from the netmap: self, peers, peers'
// published LAN hosts; a rename answers under the new name at once and
// the old one stops; dnsmasq gets its snippet; status shows domain and
// listen address.
func TestMeshDNSFromNetmap(t *testing.T) {
	self, peerB := node(1, "router-a"), node(2, "router-b", "198.19.2.0/24")
	peerB.LANHosts = []wire.LANHost{{Name: "nas", Addr: netip.MustParseAddr("198.19.2.10")}}
	coord := newFakeCoord(self)
	conf := filepath.Join(t.TempDir(), "lanmesh.conf")
	h := newHarnessWith(t, t.TempDir(), coord, func(c *config.Config, _ *Options) { c.DNS.DnsmasqConf = conf })
	sess := join(t, h, self, fullMap(self, peerB))

	st := h.d.Status(context.Background())
	if st.DNS.Domain != "mesh.internal" || !st.DNS.Enabled || st.DNS.Listen == "" || strings.HasSuffix(st.DNS.Listen, ":0") {
		t.Fatalf("status dns = %+v", st.DNS)
	}
	server := st.DNS.Listen
	for name, want := range map[string]string{
		"router-a.mesh.internal":     "100.64.0.1",
		"router-b.mesh.internal":     "100.64.0.2",
		"nas.router-b.mesh.internal": "198.19.2.10",
	} {
		r, err := query(t, server, name)
		if err != nil || r.Rcode != mdns.RcodeSuccess || strings.Join(answerA(r), ",") != want {
			t.Errorf("%s = %v %v, want %s", name, r, err, want)
		}
	}
	b, err := os.ReadFile(conf)
	if err != nil || !strings.Contains(string(b), "server=/mesh.internal/"+strings.Replace(server, ":", "#", 1)) {
		t.Fatalf("dnsmasq conf = %q, %v", b, err)
	}

	renamed := peerB
	renamed.Name = "nas-router"
	sess.msgs <- &wire.MapMessage{Seq: 2, PeersChanged: []wire.Node{renamed}}
	waitFor(t, "rename", func() bool {
		r, err := query(t, server, "nas-router.mesh.internal")
		return err == nil && len(answerA(r)) == 1
	})
	if r, err := query(t, server, "router-b.mesh.internal"); err != nil || r.Rcode != mdns.RcodeNameError {
		t.Fatalf("old name after rename = %v, %v", r, err)
	}
}

func TestDNSConfigRecordsAndClients(t *testing.T) {
	self, peer := node(1, "router-a"), node(2, "router-b")
	peer.LANHosts = []wire.LANHost{{Name: "tv", Addr: netip.MustParseAddr("198.19.2.20")}, {Name: "tv", Addr: netip.MustParseAddr("198.19.2.21")}}
	nm := &netmap{full: true, self: self, domain: "mesh.internal", peers: map[wire.NodeID]wire.Node{2: peer}}
	own := []wire.LANHost{{Name: "nas", Addr: netip.MustParseAddr("198.19.1.10")}}
	cfg := dnsConfig(nm, own, pfx("198.19.1.0/24"))
	var names []string
	for _, r := range append(cfg.Records, cfg.LeaseRecords...) {
		names = append(names, r.Name+"="+fmtAddrs(r.Addrs))
	}
	want := "router-a=100.64.0.1+fd12:3456:789a::1 router-b=100.64.0.2+fd12:3456:789a::2 nas.router-a=198.19.1.10 tv.router-b=198.19.2.20+198.19.2.21"
	if got := strings.Join(names, " "); got != want {
		t.Fatalf("records:\n got %s\nwant %s", got, want)
	}
	for _, c := range []struct {
		addr string
		ok   bool
	}{{"127.0.0.1", true}, {"100.64.9.9", true}, {"fd12:3456:789a::9", true}, {"198.19.1.77", true}, {"198.19.2.77", false}, {"8.8.8.8", false}} {
		a := netip.MustParseAddr(c.addr)
		got := false
		for _, p := range cfg.AllowedClients {
			got = got || p.Contains(a)
		}
		if got != c.ok {
			t.Errorf("client %s allowed = %v, want %v", c.addr, got, c.ok)
		}
	}
}

func fmtAddrs(as []netip.Addr) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, "+")
}
