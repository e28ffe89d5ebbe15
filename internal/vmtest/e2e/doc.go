// Package e2e boots the VMs of package vmtest (x86-64 and the MIPS Malta
// router) in the namespace testbed and checks what the lanmesh agent needs
// from their kernels: the WireGuard, TUN and nftables modules, a kernel
// wireguard link, and the agent itself starting there.
package e2e
