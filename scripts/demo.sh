#!/bin/sh
# The embedded default job. Until the shapes demo lands (issue 8) this is a
# smoke run: it builds everything and shows that the programs start.
set -e
./train --help
./eval --help
echo "minidet: smoke run ok (the shapes demo comparing all box losses is not built yet)"
