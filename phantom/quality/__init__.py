"""phantom.quality"""
