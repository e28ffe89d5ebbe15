// Package firewall owns the nftables table "inet lanmesh" (through netlink, no nft binary):
// forwarding between the mesh and LANs, TCP MSS clamping and SNAT. It never reads or
// changes another table; every update replaces the table's contents in one transaction.
package firewall
