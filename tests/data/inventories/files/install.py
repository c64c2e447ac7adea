#!/usr/bin/python3
print('a Python script, not a shell script')
