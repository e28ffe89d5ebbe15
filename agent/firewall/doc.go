// Package firewall owns the nftables table "inet lanmesh" (through netlink, no nft binary):
// coord's identity packet filter on input and forward for the mesh interface (sets, flat
// rule count), TCP MSS clamping and SNAT. It never reads or changes another table (fw4.md).
package firewall
