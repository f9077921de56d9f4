#!/bin/sh
# echo — copies the request body (stdin) to the response (stdout).
exec cat
