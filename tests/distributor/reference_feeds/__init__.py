"""The feed parsers as they were before the fast paths: the oracle of the differential tests.

Verbatim copies of ``distributor/feeds/{base,plain,hosts,ipcidr,adblock,urlhaus}.py`` at the
commit before the fast paths were added, with their imports pointed at
``tests.blocklist.reference_names`` (the normalizers of that commit) and at the real
``distributor`` modules for errors, indicators and config (and re-sorted, as ruff wants). ``test_feeds_differential`` checks
that today's parsers give exactly what these give: the same indicators in the same order and
the same report. Do not "fix" or speed up these files; if a parsing rule changes on purpose,
change it here in the same commit and say why.
"""

from . import adblock, hosts, ipcidr, plain, urlhaus

PARSERS = {
    "domains": plain.parse_domains,
    "urls": plain.parse_urls,
    "hosts": hosts.parse,
    "ipcidr": ipcidr.parse,
    "urlhaus_csv": urlhaus.parse,
    "csv": urlhaus.parse,
    "adblock": adblock.parse,
}
