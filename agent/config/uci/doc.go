// Package uci parses OpenWrt's UCI configuration files (/etc/config/*):
// "config TYPE [NAME]" sections holding "option KEY VALUE" and
// "list KEY VALUE" lines, with shell-style quoting and # comments. It only
// reads: the agent never writes UCI files (uci(1) and LuCI do). Errors name
// the file and line.
package uci
