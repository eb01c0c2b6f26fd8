#!/usr/bin/env bash
# Headless Chromium and its WebDriver for the browser test of the HTML report (tests/test_report_browser.py)
# and for `python -m dse.report.browser REPORT.html --screenshot PNG`.
#
#   scripts/chromium.sh        prints two lines: the chromium binary and the chromedriver binary
#
# Both are Debian's packages (`chromium`, `chromium-driver`: the same release, so the driver always matches the
# browser), installed here with apt-get when they are missing and we are root. Otherwise it says what to install
# and exits 1. Paths can be given instead with TIDE_CHROMIUM and TIDE_CHROMEDRIVER.
set -euo pipefail

find_bins() {
  local browser=${TIDE_CHROMIUM:-} driver=${TIDE_CHROMEDRIVER:-}
  [[ -n $browser ]] || browser=$(command -v chromium || command -v chromium-browser || true)
  [[ -n $driver ]] || driver=$(command -v chromedriver || true)
  [[ -n $driver ]] || { [[ -x /usr/lib/chromium/chromedriver ]] && driver=/usr/lib/chromium/chromedriver; } || true
  [[ -n $browser && -x $browser && -n $driver && -x $driver ]] || return 1
  printf '%s\n%s\n' "$browser" "$driver"
}

find_bins && exit 0
if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
  echo "chromium.sh: installing Chromium and its driver (apt-get install chromium chromium-driver)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >&2
  find_bins && exit 0
fi
echo "chromium.sh: Chromium and chromedriver were not found and cannot be installed here (needs root and" \
     "apt-get); install your system's packages (Debian/Ubuntu: chromium chromium-driver) or set TIDE_CHROMIUM" \
     "and TIDE_CHROMEDRIVER" >&2
exit 1
