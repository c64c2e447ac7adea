#!/bin/sh
# Stands for K3s's install script in the corpus of bad inventories.
