package main

import (
	"strings"
	"testing"
)

func TestRedactTOML(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`token = "fff"`, `token = "(removed by fff admin dump)"`},
		{"[tls]\nkey = \"/etc/fff/node.key\"\ncert = \"/etc/fff/node.pem\"", "[tls]\nkey = \"(removed by fff admin dump)\"\ncert = \"/etc/fff/node.pem\""},
		{`  admin_secret="x"`, `  admin_secret="(removed by fff admin dump)"`},
		{`Password = 'p'`, `Password = "(removed by fff admin dump)"`},
		{`listen = "127.0.0.1:9400"`, `listen = "127.0.0.1:9400"`},
		{`# the token is in admin.token`, `# the token is in admin.token`},
	} {
		if got := string(redactTOML([]byte(tc.in))); got != tc.want {
			t.Errorf("redactTOML(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if strings.Contains(tc.in, "=") && strings.Contains(strings.ToLower(tc.in), "key =") && strings.Contains(string(redactTOML([]byte(tc.in))), ".key\"") {
			t.Errorf("%q: a key path survived", tc.in)
		}
	}
}
