package controller

import (
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	// The generated NAD fake clientset does not send the bookmark that client-go's streaming
	// list (WatchListClient) waits for; real apiservers do. Use plain list+watch in unit tests.
	_ = os.Setenv("KUBE_FEATURE_WatchListClient", "false")
	os.Exit(m.Run())
}
