package cli

import (
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// Exit codes of kubectl-netplug. They are part of its interface (README "CLI: kubectl netplug").
const (
	ExitOK        = 0 // done
	ExitError     = 1 // any other error: the API server unreachable, conflicts that never settled, ...
	ExitUsage     = 2 // bad command line
	ExitRefused   = 3 // netplug would refuse the edit (nothing was written)
	ExitNotFound  = 4 // the pod, the NetworkAttachmentDefinition or the element to detach does not exist
	ExitNoNetplug = 5 // no netplug pod runs on the pod's node
	ExitForbidden = 6 // the API server refused: RBAC denied, or not authenticated
	ExitFailed    = 7 // --wait: netplug reported that the change failed
	ExitTimeout   = 8 // --wait: the change was not done in time
)

// CodedError is an error with the exit code it maps to.
type CodedError struct {
	Code int
	Err  error
}

func (e *CodedError) Error() string { return e.Err.Error() }
func (e *CodedError) Unwrap() error { return e.Err }

func exitErr(code int, format string, args ...any) error {
	return &CodedError{Code: code, Err: fmt.Errorf(format, args...)}
}

// usageErr marks a bad command line.
func usageErr(format string, args ...any) error { return exitErr(ExitUsage, format, args...) }

// refused marks an edit netplug would refuse.
func refused(format string, args ...any) error { return exitErr(ExitRefused, format, args...) }

// ExitCode maps an error returned by the command to the process exit code: nil is ExitOK, an
// CodedError its code, an API error that is Forbidden or Unauthorized ExitForbidden, and
// anything else ExitError.
func ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var e *CodedError
	if errors.As(err, &e) {
		return e.Code
	}
	if apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err) {
		return ExitForbidden
	}
	return ExitError
}

// apiErr wraps an error of an API call made to do what: RBAC denials say so plainly.
func apiErr(err error, what string) error {
	switch {
	case apierrors.IsForbidden(err):
		return &CodedError{Code: ExitForbidden, Err: fmt.Errorf("%s: permission denied (RBAC): %w", what, err)}
	case apierrors.IsUnauthorized(err):
		return &CodedError{Code: ExitForbidden, Err: fmt.Errorf("%s: not authenticated: %w", what, err)}
	default:
		return fmt.Errorf("%s: %w", what, err)
	}
}
