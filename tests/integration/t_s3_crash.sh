#!/usr/bin/env bash
# kill -9 campaign on S3 (Ceph RGW), the smaller part of t_crash.sh's
# (crash_lib.sh says what is done and checked): each round backs up to a
# file:// repository, copies it to an S3 copy, then forgets and prunes on S3;
# the copy, the forget and the prune are killed at a store operation chosen at
# random (seed printed; FERRY_CRASH_SEED reproduces a run, FERRY_CRASH_ROUNDS
# sets the rounds), then check --read-data and a byte-identical restore of
# every snapshot read from S3, and a rerun that finishes the job.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/../s3/lib.sh"
source "$(dirname "$0")/crash_lib.sh"
# ferry signs as the primary user (awscli takes --profile)
export AWS_ACCESS_KEY_ID=$RGW_PRIMARY_AK AWS_SECRET_ACCESS_KEY=$RGW_PRIMARY_SK

# s3_nlocks URL: the lock objects of the S3 copy, as the bucket lists them.
s3_nlocks() {
  [ "$1" = "$C" ] || fail "s3_nlocks: unknown repository $1"
  awsp primary s3api list-objects-v2 --bucket ferry-primary --prefix "$S3_RUN/locks/" \
    --query 'length(Contents || `[]`)' --output text # (RGW sends no KeyCount)
}

P=$T/repo
C="s3://ferry-primary/$S3_RUN?endpoint=$RGW_HTTP"
"$FERRY" init --repo "$P" --chunk-size 1M -q
"$FERRY" init --repo "$C" --copy-of "$P" -q
CRASH_KILL="copy forget prune"
CRASH_GC=C
CRASH_ROUNDS=${FERRY_CRASH_ROUNDS:-5}
crash_campaign
crash_report copy forget prune
