// Package opkg builds the OpenWrt packages of lanmesh (.ipk, the format of
// OpenWrt 24.10's opkg) from the Go cross builds and the files of the feed
// in firmware/openwrt, without the OpenWrt SDK. nfpm writes the archives;
// this package decides what goes in each package, adds the maintainer
// scripts the SDK would generate, and sets Installed-Size in bytes as
// OpenWrt does. OpenWrt 25.x apk packages come from the SDK only.
package opkg
