#!/bin/sh
# check_layers.sh [ROOT] — fails on an include that goes up the layer picture of docs/CONVENTIONS.md.
# Reads the table between "<!-- layers" and "<!-- /layers -->" there (layer, rank, headers), then for
# every src/<layer>/*.[ch] and include/minidet/*.h maps each #include "minidet/x.h" to x.h's layer and
# reports an include of a higher rank, of another layer of the same rank, or of a header not in the table.
# Exit 0 = clean, 1 = violations (each printed as FILE: includes X.h (layer L, rank R) from layer M, rank N).
set -eu
ROOT=${1:-.}
DOC=$ROOT/docs/CONVENTIONS.md
[ -f "$DOC" ] || { echo "check_layers: $DOC is missing" >&2; exit 1; }
table=$(awk '/<!-- layers/{on=1; next} /<!-- \/layers -->/{on=0} on && !/^```/ && NF >= 2' "$DOC")
[ -n "$table" ] || { echo "check_layers: no layer table in $DOC" >&2; exit 1; }
bad=0
check() { # file layer
    f=$1; L=$2
    for h in $(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"minidet\/\([a-z0-9_]*\.h\)".*/\1/p' "$f"); do
        line=$(echo "$table" | awk -v h="$h" -v l="$L" '
            { for (i = 3; i <= NF; i++) if ($i == h) { hl = $1; hr = $2 } if ($1 == l) fr = $2 }
            END { if (fr == "") print "nolayer"; else if (hl == "") print "unknown"; else if (hl == l) print "ok";
                  else if (hr + 0 < fr + 0) print "ok"; else print hl " " hr " " fr }')
        case $line in
            ok) ;;
            nolayer) echo "$f: layer '$L' is not in the table of $DOC"; bad=1 ;;
            unknown) echo "$f: includes minidet/$h, which no layer of $DOC owns (add it to the table)"; bad=1 ;;
            *) set -- $line; echo "$f: includes minidet/$h (layer $1, rank $2) from layer $L, rank $3"; bad=1 ;;
        esac
    done
}
for d in "$ROOT"/src/*/; do
    L=$(basename "$d")
    [ "$L" = cli ] && continue
    for f in "$d"*.c "$d"*.h; do [ -f "$f" ] && check "$f" "$L"; done
done
for f in "$ROOT"/include/minidet/*.h; do
    h=$(basename "$f")
    L=$(echo "$table" | awk -v h="$h" '{ for (i = 3; i <= NF; i++) if ($i == h) print $1 }')
    if [ -z "$L" ]; then echo "$f: no layer of $DOC owns this header (add it to the table)"; bad=1; continue; fi
    check "$f" "$L"
done
[ $bad -eq 0 ] && echo "check_layers: no upward include ($(echo "$table" | wc -l) layers)"
exit $bad
