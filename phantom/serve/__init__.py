"""phantom.serve"""
