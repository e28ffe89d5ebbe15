//go:build !linux

package main

import (
	"context"
	"errors"
	"io"
)

func runAgent(context.Context, []string, io.Writer, io.Writer) error {
	return errors.New("the agent runs on Linux only; the other commands work here")
}
