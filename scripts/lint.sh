#!/bin/sh
# `npm run lint`: ESLint and `prettier --check` side by side. Neither writes a file and each reads the sources on
# its own, so on two cores the check takes about as long as ESLint alone (its type-aware rules build the
# TypeScript program: about 40 s here), not the sum of both (about 70 s in turns). Exits non-zero when either
# fails; both always run to the end, so one run shows every finding.
set -u
eslint --max-warnings 0 src test bench scripts tools public eslint.config.mjs &
eslint_pid=$!
# --cache: a later run checks only files changed since (kept in node_modules/.cache/prettier, by content).
prettier --check --cache --cache-strategy content "{src,test,bench,scripts,tools}/**/*.{ts,js,mjs}" "public/**/*.js" eslint.config.mjs
prettier_status=$?
wait "$eslint_pid"
eslint_status=$?
[ "$eslint_status" -eq 0 ] && [ "$prettier_status" -eq 0 ]
