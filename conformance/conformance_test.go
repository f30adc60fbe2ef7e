// The upstream Gateway API conformance suite, unmodified, run against Gatehouse on the
// testbed. Flags (profiles, supported features, report metadata) come from conformance/run.
package conformance_test

import (
	"testing"

	"sigs.k8s.io/gateway-api/conformance"
)

func TestConformance(t *testing.T) {
	conformance.RunConformance(t)
}
