#!/usr/bin/env bash
# Re-vendors xterm.js and its fit addon from the npm registry:
#   session-proxy/assets/vendor/update.sh [xterm-version] [fit-version]
set -euo pipefail
cd "$(dirname "$0")"
XTERM=${1:-6.0.0}
FIT=${2:-0.11.0}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "@xterm/xterm@$XTERM" "@xterm/addon-fit@$FIT" >/dev/null)
tar xzf "$work/xterm-xterm-$XTERM.tgz" -C "$work" package/lib/xterm.js package/css/xterm.css package/LICENSE
cp "$work/package/lib/xterm.js" xterm.js
cp "$work/package/css/xterm.css" xterm.css
cp "$work/package/LICENSE" LICENSE.xterm
rm -rf "$work/package"
tar xzf "$work/xterm-addon-fit-$FIT.tgz" -C "$work" package/lib/addon-fit.js package/LICENSE
cp "$work/package/lib/addon-fit.js" addon-fit.js
cp "$work/package/LICENSE" LICENSE.addon-fit
# The source maps are not vendored.
sed -i 's|//# sourceMappingURL=.*||' xterm.js addon-fit.js
echo "vendored @xterm/xterm $XTERM and @xterm/addon-fit $FIT"
