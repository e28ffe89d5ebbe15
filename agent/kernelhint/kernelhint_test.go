package kernelhint

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
)

// The errors a kernel without nftables or TUN really gives (as the
// netlink library and open(2) wrap them) turn into ones that name what
// to install; anything else passes through untouched.
func TestExplain(t *testing.T) {
	socketErr := &os.SyscallError{Syscall: "socket", Err: syscall.EPROTONOSUPPORT} // "socket: protocol not supported"
	for _, tc := range []struct {
		name string
		f    Feature
		err  error
		want []string // substrings; nil: unchanged
	}{
		{"nft without nfnetlink", NFTables, fmt.Errorf("firewall: replace table inet lanmesh: %w", socketErr),
			[]string{"socket: protocol not supported", "kmod-nft-core", "kmod-nft-nat", "modprobe nf_tables", "CONFIG_NF_TABLES"}},
		{"nft without an expression module", NFTables, fmt.Errorf("firewall: replace table: %w", syscall.ENOENT),
			[]string{"nft_masq", "kmod-nft-nat"}},
		{"tun missing", TUN, fmt.Errorf("open /dev/net/tun: %w", syscall.ENOENT),
			[]string{"/dev/net/tun", "kmod-tun", "modprobe tun", "--device /dev/net/tun"}},
		{"tun module not loaded", TUN, fmt.Errorf("open /dev/net/tun: %w", syscall.ENODEV), []string{"kmod-tun"}},
		{"not root", NFTables, fmt.Errorf("x: %w", &os.SyscallError{Syscall: "sendmsg", Err: syscall.EPERM}), []string{"needs root"}},
		{"other nft error", NFTables, fmt.Errorf("firewall: %w", syscall.EINVAL), nil},
		{"tun busy", TUN, fmt.Errorf("open: %w", syscall.EBUSY), nil},
		{"ENOENT is not TUN's when it is nftables'", TUN, fmt.Errorf("x: %w", syscall.EPROTONOSUPPORT), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Explain(tc.f, tc.err)
			if tc.want == nil {
				if got != tc.err {
					t.Fatalf("Explain changed an unrelated error: %v", got)
				}
				return
			}
			for _, w := range tc.want {
				if !strings.Contains(got.Error(), w) {
					t.Errorf("%q does not name %q", got, w)
				}
			}
			if !errors.Is(got, tc.err) {
				t.Errorf("Explain lost the wrapped error")
			}
		})
	}
	if Explain(TUN, nil) != nil {
		t.Fatal("Explain(nil) != nil")
	}
}
