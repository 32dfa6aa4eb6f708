using LibvirtSharp.Native;

namespace LibvirtSharp;

/// <summary>virDomainGetState's answer: the state and its reason (a virDomain*Reason value for that state).</summary>
public readonly record struct DomainState(virDomainState State, int Reason);
