package testbed

// The syscall package has no SYS_SETNS on amd64.
const sysSetns = 308
