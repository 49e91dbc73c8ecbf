package sync

import (
	"slices"
	"testing"
)

func TestIdentityDiffers(t *testing.T) {
	bound := Identity{API: "plugipay", Host: "api.plugipay.com", Mode: "test", Account: "acc_1"}
	for _, tc := range []struct {
		name string
		seen Identity
		want []string
	}{
		{"Same", bound, nil},
		{"EmptyWorkspaceNamesNoAccount", Identity{API: "plugipay", Host: "api.plugipay.com", Mode: "test"}, nil},
		{"OtherAccount", Identity{API: "plugipay", Host: "api.plugipay.com", Mode: "test", Account: "acc_2"}, []string{"account"}},
		{"OtherMode", Identity{API: "plugipay", Host: "api.plugipay.com", Mode: "live", Account: "acc_1"}, []string{"mode"}},
		{"UnknownModeIsNotTest", Identity{API: "plugipay", Host: "api.plugipay.com", Account: "acc_1"}, []string{"mode"}},
		{"OtherHost", Identity{API: "plugipay", Host: "127.0.0.1", Mode: "test"}, []string{"host"}},
		{"OnBehalfOf", Identity{API: "plugipay", Host: "api.plugipay.com", Mode: "test", OnBehalfOf: "acc_m"}, []string{"on_behalf_of"}},
		{"OtherAPI", Identity{API: "paygate", Host: "api.plugipay.com", Mode: "test"}, []string{"api"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := bound.differs(tc.seen); !slices.Equal(got, tc.want) {
				t.Errorf("differs = %v, want %v", got, tc.want)
			}
		})
	}
}
