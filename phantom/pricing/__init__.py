"""phantom.pricing"""
