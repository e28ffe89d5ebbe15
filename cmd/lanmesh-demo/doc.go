// Command lanmesh-demo builds the standard namespace world (coord, two routers with their LANs), joins both routers with the real binaries and pings across, narrating each step with timings.
// It touches only namespaces it creates (internal/testbed) and removes them on exit; --once tears down at once, otherwise it waits for Ctrl-C.
// Needs root; binaries come from $LANMESH_BIN_DIR or are built from the module it runs in.
package main
