namespace LibvirtSharp;
