package rpcbench

import (
	"context"
	"os"
	"testing"
	"time"
)

func TestManualRun(t *testing.T) {
	d, err := time.ParseDuration(os.Getenv("RPCBENCH_D"))
	if err != nil {
		t.Skip()
	}
	if err := Run(context.Background(), os.Stdout, d); err != nil {
		t.Fatal(err)
	}
}
