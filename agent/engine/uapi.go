package engine

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/lanmesh/lanmesh/internal/key"
)

// keepaliveSeconds keeps a session warm so the first packet after a pause
// needs no handshake.
const keepaliveSeconds = 25

// initiates reports whether self starts handshakes with peer on its own
// (persistent keepalive, kicks). Only one side of each pair does: when
// both start one at the same moment (peer just added, path just found)
// the initiations cross, each side becomes the responder and rejects the
// other's response, and the session waits for wireguard-go's 5 s retry.
// NAT mappings do not need the other side's keepalive: disco probes
// direct paths every few seconds.
func initiates(self, peer key.NodePublic) bool { return bytes.Compare(self[:], peer[:]) < 0 }

// keepaliveFor is the persistent keepalive self sets for peer.
func keepaliveFor(self, peer key.NodePublic) int {
	if initiates(self, peer) {
		return keepaliveSeconds
	}
	return 0
}

// peerUAPI is the UAPI "set" section that makes the device's view of p
// match: its allowed IPs replaced, and endpoint set when ep is valid.
func peerUAPI(b *strings.Builder, p Peer, ep netip.AddrPort, keepalive int) {
	fmt.Fprintf(b, "public_key=%s\n", p.Key.Hex())
	b.WriteString("replace_allowed_ips=true\n")
	for _, a := range p.AllowedIPs {
		fmt.Fprintf(b, "allowed_ip=%s\n", a.Masked())
	}
	if ep.IsValid() {
		fmt.Fprintf(b, "endpoint=%s\n", ep)
	}
	fmt.Fprintf(b, "persistent_keepalive_interval=%d\n", keepalive)
}

func removeUAPI(b *strings.Builder, k key.NodePublic) {
	fmt.Fprintf(b, "public_key=%s\nremove=true\n", k.Hex())
}

// deviceState is what IpcGet reports.
type deviceState struct {
	ListenPort uint16
	Peers      []PeerStatus
}

// parseUAPI parses the device's UAPI "get" output. It comes from our own
// process, but it is parsed strictly anyway: an error names the line.
func parseUAPI(s string) (deviceState, error) {
	var st deviceState
	var cur *PeerStatus
	var sec, nsec int64
	flush := func() {
		if cur != nil {
			if sec != 0 || nsec != 0 {
				cur.LastHandshake = time.Unix(sec, nsec)
			}
			st.Peers = append(st.Peers, *cur)
		}
		sec, nsec = 0, 0
	}
	for n, line := range strings.Split(s, "\n") {
		if line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return deviceState{}, fmt.Errorf("uapi line %d: no '=' in %q", n+1, line)
		}
		var err error
		switch k {
		case "public_key":
			flush()
			cur = &PeerStatus{}
			err = decodeHexKey(v, (*[32]byte)(&cur.Key))
		case "listen_port":
			var p uint64
			p, err = strconv.ParseUint(v, 10, 16)
			st.ListenPort = uint16(p)
		case "private_key", "fwmark", "errno":
			// not reported; errno is the trailer of a raw UAPI answer
		default:
			if cur == nil {
				return deviceState{}, fmt.Errorf("uapi line %d: peer field %q before public_key", n+1, k)
			}
			err = parsePeerField(cur, k, v, &sec, &nsec)
		}
		if err != nil {
			return deviceState{}, fmt.Errorf("uapi line %d (%s): %w", n+1, k, err)
		}
	}
	flush()
	return st, nil
}

func parsePeerField(p *PeerStatus, k, v string, sec, nsec *int64) error {
	var err error
	switch k {
	case "endpoint":
		// magicsock endpoints are node keys (the engine fills the path
		// from magicsock); a bare address is kept.
		var k [32]byte
		if ap, perr := netip.ParseAddrPort(v); perr == nil {
			p.Endpoint = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		} else if decodeHexKey(v, &k) != nil {
			err = fmt.Errorf("endpoint %q is neither ip:port nor a node key", v)
		}
	case "last_handshake_time_sec":
		*sec, err = strconv.ParseInt(v, 10, 64)
	case "last_handshake_time_nsec":
		*nsec, err = strconv.ParseInt(v, 10, 64)
		if err == nil && (*nsec < 0 || *nsec >= 1e9) {
			err = fmt.Errorf("nanoseconds %d out of range", *nsec)
		}
	case "rx_bytes":
		p.RxBytes, err = strconv.ParseUint(v, 10, 64)
	case "tx_bytes":
		p.TxBytes, err = strconv.ParseUint(v, 10, 64)
	case "preshared_key", "protocol_version", "persistent_keepalive_interval", "allowed_ip":
	default:
		err = fmt.Errorf("unknown key")
	}
	return err
}

func decodeHexKey(s string, dst *[32]byte) error {
	if len(s) != 64 {
		return fmt.Errorf("key has %d hex digits, want 64", len(s))
	}
	_, err := hex.Decode(dst[:], []byte(s))
	return err
}
