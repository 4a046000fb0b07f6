r"""Sans-I/O codecs: the 123\SmartBMS UART frame (encode, decode, resynchronise).

Pure code: no I/O, no clock, no asyncio. Time comes in as an argument.
"""
