"""phantom.features"""
