package tests

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// adminTables returns the chain tables `fff admin chains --json` lists.
func adminTables(t *testing.T, c *cluster) map[uint32][]uint32 {
	t.Helper()
	var out struct {
		Tables []struct {
			ID     uint32   `json:"id"`
			Chains []uint32 `json:"chains"`
		} `json:"chain_tables"`
	}
	s := mustFFF(t, c.env(c.token), "admin", "chains", "--json")
	if err := json.Unmarshal([]byte(s), &out); err != nil {
		t.Fatalf("admin chains --json: %v\n%s", err, s)
	}
	m := map[uint32][]uint32{}
	for _, tb := range out.Tables {
		m[tb.ID] = tb.Chains
	}
	return m
}

// TestAdminChainsAndTables: `fff admin chain create` and `fff admin table
// add|set` change the cluster as an admin asks and refuse, changing
// nothing, what they must: a target already chained, a bad id, a user's
// token.
func TestAdminChainsAndTables(t *testing.T) {
	t.Parallel()
	c := startCluster(t)
	env := c.env(c.token)
	ts := adminTargets(t, c)
	if len(ts) != 2 {
		t.Fatalf("targets %+v", ts)
	}
	c1, c2 := ts[0].ChainID, ts[1].ChainID
	before := adminTables(t, c)

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"chain", "create", fmt.Sprint(ts[0].ID)}, 1, "already belongs to chain"},
		{[]string{"chain", "create", "x"}, 2, "positive number"},
		{[]string{"table", "add", "0", fmt.Sprint(c1)}, 2, "positive number"},
		{[]string{"table", "set", "2", "999"}, 1, "no chain 999"},
		{[]string{"table", "add", "2"}, 2, ""},
	} {
		r := fff(t, env, append([]string{"admin"}, tc.args...)...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("fff admin %s: exit %d, stderr %q; want exit %d mentioning %q", strings.Join(tc.args, " "), r.code, r.stderr, tc.code, tc.want)
		}
	}
	if got := adminTables(t, c); len(got) != len(before) {
		t.Fatalf("refused commands changed the tables: %v → %v", before, got)
	}

	out := mustFFF(t, env, "admin", "table", "add", "2", fmt.Sprint(c2), fmt.Sprint(c1))
	if !strings.Contains(out, "chain table 2") {
		t.Fatalf("table add: %q", out)
	}
	mustFFF(t, env, "admin", "table", "add", "2", fmt.Sprint(c1))
	if got := adminTables(t, c)[2]; !slices.Equal(got, []uint32{c2, c1}) {
		t.Fatalf("table 2 after add: %v", got)
	}
	mustFFF(t, env, "admin", "table", "set", "2", fmt.Sprint(c1))
	got := adminTables(t, c)
	if !slices.Equal(got[2], []uint32{c1}) || !slices.Equal(got[1], before[1]) {
		t.Fatalf("tables after set: %v", got)
	}

	tok := strings.TrimSpace(mustFFF(t, env, "admin", "user", "add", "dave", "--uid", "4100"))
	if r := fff(t, c.env(tok), "admin", "table", "set", "2", fmt.Sprint(c2)); r.code == 0 {
		t.Fatalf("a user's token changed a chain table: %q", r.stdout)
	}
	if got := adminTables(t, c)[2]; !slices.Equal(got, []uint32{c1}) {
		t.Fatalf("table 2 after a user's try: %v", got)
	}
}
