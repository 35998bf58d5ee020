"""The UK Safer Internet Centre's filtering categories, and which UT1 lists stand for each.

UK schools are expected to show that their filtering covers the categories the UK Safer Internet Centre
names in its "appropriate filtering" guidance: discrimination, drugs, extremism, gambling, malware and
hacking, pornography, piracy and copyright theft, self-harm, and violence. A policy names these as
categories like any other; the table here says which UT1 directories feed each one, so a school need
not write that mapping itself. A category the policy's `categories.map` names explicitly keeps the
school's mapping. UT1 has no list for extremism or self-harm: those rely on the school's own lists or
its web filter's categories, and `ictwatch check` says so.

The UT1 directory names come from UT1's own catalogue (`global_usage`); the pairing follows each list's
description there (for example `agressif`: racist, antisemitic and hate sites, hence discrimination, and
violent content, hence violence).
"""

from __future__ import annotations

from types import MappingProxyType

UK_SIC: MappingProxyType[str, tuple[str, ...]] = MappingProxyType({
    "discrimination": ("agressif",),
    "drugs": ("drogue",),
    "extremism": (),
    "gambling": ("gambling", "arjel"),
    "malware-hacking": ("malware", "phishing", "cryptojacking", "stalkerware", "ddos", "hacking", "dialer"),
    "pornography": ("adult", "mixed_adult", "lingerie"),
    "piracy": ("warez",),
    "self-harm": (),
    "violence": ("agressif", "dangerous_material"),
})
"""UK Safer Internet Centre category → the UT1 directories that hold sites of that kind."""
