"""phantom.detect"""
