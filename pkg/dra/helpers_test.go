package dra

import (
	"time"

	k8stesting "k8s.io/client-go/testing"
)

type k8stestingAction = k8stesting.Action

const timeoutForTests = 10 * time.Second
