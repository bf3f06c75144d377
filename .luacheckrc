std = "lua54"
max_line_length = 150
files["lua/"] = { globals = { "module", "prosody" } }
files["spec/"] = { std = "+busted" }
files["tests/e2e/plugins/"] = { globals = { "module", "prosody" } }
