// Package uci parses OpenWrt's UCI configuration files (/etc/config/*):
// "config TYPE [NAME]" sections holding "option KEY VALUE" and
// "list KEY VALUE" lines, with shell-style quoting and # comments. The agent
// writes only through Set, when the web page changes a join setting, so
// the change survives a restart. Errors name the file and line.
package uci
