"""phantom.monitor"""
