-- A pure-Lua stand-in for the parts of Prosody's util.encodings (a C library) that the
-- specs reach: utf8.valid (util.stanza) and stringprep.nodeprep/nameprep/resourceprep
-- (util.jid, the plugin). spec/helpers.lua uses it only when the real library cannot
-- load, i.e. when busted runs under a Lua other than the one Prosody's util/*.so were
-- built for (Debian: 5.4; `make test-lua-versions` runs 5.1-5.3 too).
--
-- Limits, on purpose: stringprep here is ASCII-only (lowercase A-Z, refuse the
-- characters RFC 7622 forbids in a localpart, refuse control characters and invalid
-- UTF-8; other non-ASCII text passes unchanged, no Unicode case folding or
-- normalisation). Under Lua 5.4 the specs always use Prosody's real library.

local s_byte, s_find, s_lower = string.byte, string.find, string.lower;

-- RFC 3629 UTF-8: no overlongs, no surrogates, nothing above U+10FFFF.
local function valid_utf8(s)
	if type(s) ~= "string" then return false; end
	local i, n = 1, #s;
	while i <= n do
		local c = s_byte(s, i);
		local len, lo, hi;
		if c < 0x80 then
			len = 1;
		elseif c >= 0xC2 and c <= 0xDF then
			len = 2;
		elseif c >= 0xE0 and c <= 0xEF then
			len = 3;
			lo = (c == 0xE0) and 0xA0 or 0x80;
			hi = (c == 0xED) and 0x9F or 0xBF;
		elseif c >= 0xF0 and c <= 0xF4 then
			len = 4;
			lo = (c == 0xF0) and 0x90 or 0x80;
			hi = (c == 0xF4) and 0x8F or 0xBF;
		else
			return false;
		end
		if i + len - 1 > n then return false; end
		for k = 1, len - 1 do
			local b = s_byte(s, i + k);
			local min, max = 0x80, 0xBF;
			if k == 1 and lo then min, max = lo, hi; end
			if b < min or b > max then return false; end
		end
		i = i + len;
	end
	return true;
end

local function prep(forbidden)
	return function (s)
		if type(s) ~= "string" or not valid_utf8(s) then return nil; end
		if s_find(s, "[\1-\31\127]") or s_find(s, "\0", 1, true) then return nil; end
		if forbidden and s_find(s, forbidden) then return nil; end
		if #s > 1023 then return nil; end
		return forbidden and s_lower(s) or s;
	end;
end

return {
	utf8 = { valid = valid_utf8 };
	stringprep = {
		-- RFC 7622 / RFC 3920 Appendix A.5: no space, " & ' / : < > @ in a localpart.
		nodeprep = prep("[ \"&'/:<>@]");
		nameprep = prep("[ /@]");
		resourceprep = prep(nil);
	};
	standin = true;
};
